//! S/MIME structure and CMS signature checks.
