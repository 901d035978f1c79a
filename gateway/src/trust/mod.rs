//! Certificate path validation and revocation.
