//! The demo's PKI and policy, made fresh on every run under the demo
//! directory (never committed): three authorities, each with a root CA, an
//! issuing CA, CRLs and two officials; and the gateway's own signing
//! certificate for receipts. All keys are ECDSA P-256 (rcgen over ring).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// One authority of the demo.
pub struct DemoAuthority {
    /// Policy id, e.g. `aa-moj`.
    pub id: &'static str,
    /// Country code.
    pub country: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Its mail domain.
    pub domain: &'static str,
    /// Its two officials' local parts.
    pub officials: [&'static str; 2],
}

/// The three authorities.
pub const AUTHORITIES: [DemoAuthority; 3] = [
    DemoAuthority {
        id: "aa-moj",
        country: "AA",
        name: "Ministry of Justice of Avalonia",
        domain: "justice.aa.example",
        officials: ["anna", "arne"],
    },
    DemoAuthority {
        id: "bb-moj",
        country: "BB",
        name: "Ministry of Justice of Borduria",
        domain: "justice.bb.example",
        officials: ["boris", "bea"],
    },
    DemoAuthority {
        id: "cc-pg",
        country: "CC",
        name: "Prosecutor General of Carpania",
        domain: "pg.cc.example",
        officials: ["carla", "chen"],
    },
];

/// The gateway's host name and postmaster in the demo.
pub const HOSTNAME: &str = "emla.demo.example";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("demo PKI: {what}: {e}")
}

fn params(cn: &str, org: &str, country: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, country);
    p.distinguished_name.push(DnType::OrganizationName, org);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = now - Duration::from_secs(86_400);
    p.not_after = now + Duration::from_secs(2 * 365 * 86_400);
    let mut serial = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial);
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.use_authority_key_identifier_extension = true;
    p
}

fn root(cn: &str, org: &str, country: &str) -> Result<Ca, String> {
    let key = KeyPair::generate().map_err(|e| failed("key", e))?;
    let mut p = params(cn, org, country);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = false;
    let cert = p.self_signed(&key).map_err(|e| failed(cn, e))?;
    Ok(Ca { cert, key })
}

fn issuing(parent: &Ca, cn: &str, org: &str, country: &str) -> Result<Ca, String> {
    let key = KeyPair::generate().map_err(|e| failed("key", e))?;
    let mut p = params(cn, org, country);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p
        .signed_by(&key, &parent.cert, &parent.key)
        .map_err(|e| failed(cn, e))?;
    Ok(Ca { cert, key })
}

/// An S/MIME signing certificate for `email`: PEM of the certificate
/// followed by its issuer, and PEM of the key.
fn person(
    ca: &Ca,
    email: &str,
    cn: &str,
    org: &str,
    country: &str,
) -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(|e| failed("key", e))?;
    let mut p = params(cn, org, country);
    p.subject_alt_names = vec![SanType::Rfc822Name(
        email.try_into().map_err(|e| failed(email, e))?,
    )];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    let cert = p
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(|e| failed(email, e))?;
    Ok((cert.pem() + &ca.cert.pem(), key.serialize_pem()))
}

fn crl(ca: &Ca) -> Result<String, String> {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::from_secs(3600),
        next_update: now + Duration::from_secs(30 * 86_400),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .and_then(|c| c.pem())
    .map_err(|e| failed("CRL", e))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Private keys are for their owner only.
    let mode = if path.extension().is_some_and(|e| e == "key") {
        0o600
    } else {
        0o644
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The demo TSA's CA and certificate: `dir/pki/tsa/ca.pem`, `tsa.pem`,
/// `tsa.key`. RFC 3161 (and `openssl ts -reply`) wants extendedKeyUsage
/// timeStamping alone and critical, which rcgen's own field does not mark.
pub fn tsa(dir: &Path) -> Result<(), String> {
    let d = dir.join("pki/tsa");
    let ca = root("emla demo TSA CA", "emla demo", "ZZ")?;
    let key = KeyPair::generate().map_err(|e| failed("key", e))?;
    let mut p = params("emla demo TSA", "emla demo", "ZZ");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // SEQUENCE { id-kp-timeStamping (1.3.6.1.5.5.7.3.8) }
    let eku = [
        0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
    ];
    let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 37], eku.to_vec());
    ext.set_criticality(true);
    p.custom_extensions = vec![ext];
    let cert = p
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(|e| failed("TSA", e))?;
    write(&d.join("ca.pem"), &ca.cert.pem())?;
    write(&d.join("tsa.pem"), &cert.pem())?;
    write(&d.join("tsa.key"), &key.serialize_pem())
}

/// The web view's HTTPS certificate for `ip`, self-signed (the browser
/// warns once): `dir/pki/web/web.pem` and `web.key`.
pub fn web(dir: &Path, ip: std::net::IpAddr) -> Result<(PathBuf, PathBuf), String> {
    let d = dir.join("pki/web");
    let key = KeyPair::generate().map_err(|e| failed("key", e))?;
    let mut p = params(&ip.to_string(), "emla demo", "ZZ");
    p.subject_alt_names = vec![SanType::IpAddress(ip)];
    // As `openssl req -x509` makes one: its own trust anchor for a client
    // given it as the CA file.
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.self_signed(&key).map_err(|e| failed("web", e))?;
    let (pem, k) = (d.join("web.pem"), d.join("web.key"));
    write(&pem, &cert.pem())?;
    write(&k, &key.serialize_pem())?;
    Ok((pem, k))
}

/// Writes `dir/pki/…` and `dir/policy/…` with every authority's next hop at
/// `mailbox_port`; returns the policy directory.
pub fn create(dir: &Path, mailbox_port: u16) -> Result<PathBuf, String> {
    let pki = dir.join("pki");
    let policy = dir.join("policy");
    let mut routes = String::new();
    for a in &AUTHORITIES {
        let d = pki.join(a.country.to_ascii_lowercase());
        let root = root(&format!("{} Root CA", a.name), a.name, a.country)?;
        let iss = issuing(&root, &format!("{} Issuing CA", a.name), a.name, a.country)?;
        write(&d.join("root.pem"), &root.cert.pem())?;
        write(&d.join("issuing.pem"), &iss.cert.pem())?;
        write(&d.join("root.crl.pem"), &crl(&root)?)?;
        write(&d.join("issuing.crl.pem"), &crl(&iss)?)?;
        for o in a.officials {
            let email = format!("{o}@{}", a.domain);
            let (cert, key) = person(
                &iss,
                &email,
                &format!("{o} ({})", a.name),
                a.name,
                a.country,
            )?;
            write(&d.join(format!("{o}.pem")), &cert)?;
            write(&d.join(format!("{o}.key")), &key)?;
        }
        let cc = a.country.to_ascii_lowercase();
        write(
            &policy.join("authorities").join(format!("{}.toml", a.id)),
            &format!(
                "id = \"{id}\"\ncountry = \"{country}\"\nname = \"{name}\"\ndomains = [\"{domain}\"]\n\
                 duty = \"duty@{domain}\"\ntrust_anchors = [\"../pki/{cc}/root.pem\"]\nintermediates = [\"../pki/{cc}/issuing.pem\"]\n\
                 crls = [\"../pki/{cc}/root.crl.pem\", \"../pki/{cc}/issuing.crl.pem\"]\n\n\
                 [next_hop]\nurl = \"smtp://127.0.0.1:{mailbox_port}\"\ntls = \"opportunistic\"\n",
                id = a.id,
                country = a.country,
                name = a.name,
                domain = a.domain,
            ),
        )?;
        for b in &AUTHORITIES {
            if a.id != b.id {
                routes += &format!(
                    "[[route]]\nname = \"{}-to-{}\"\nfrom = \"authority:{}\"\nto = \"authority:{}\"\naction = \"relay\"\n\n",
                    a.country.to_ascii_lowercase(),
                    b.country.to_ascii_lowercase(),
                    a.id,
                    b.id
                );
            }
        }
    }
    routes += "[[route]]\nname = \"no-internal\"\nfrom = \"*\"\nto = \"*\"\naction = \"reject\"\n\
               reason = \"mail within one authority is not relayed\"\n";
    write(&policy.join("routes.toml"), &routes)?;

    let gw_ca = root("emla demo gateway CA", "emla demo", "ZZ")?;
    let postmaster = format!("postmaster@{HOSTNAME}");
    let (cert, key) = person(&gw_ca, &postmaster, "emla demo gateway", "emla demo", "ZZ")?;
    write(&pki.join("gateway/ca.pem"), &gw_ca.cert.pem())?;
    write(&pki.join("gateway/gateway.pem"), &cert)?;
    write(&pki.join("gateway/gateway.key"), &key)?;
    write(
        &policy.join("gateway.toml"),
        &format!(
            "[gateway]\nhostname = \"{HOSTNAME}\"\npostmaster = \"{postmaster}\"\n\
             signing_cert = \"../pki/gateway/gateway.pem\"\nsigning_key = \"../pki/gateway/gateway.key\"\n\n\
             [relay]\nretry_initial_secs = 5\nretry_max_secs = 60\n"
        ),
    )?;
    Ok(policy)
}
