//! Development certificates (`jvm-guard certs`, `serve --dev`): a CA and a serving certificate
//! signed by it, or a self-signed one, all ECDSA P-256 made with rcgen.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Names a serving certificate is valid for; the SANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Default for Names {
    /// `localhost` and `127.0.0.1`, as SPEC §5.1 says.
    fn default() -> Names {
        Names {
            dns: vec!["localhost".into()],
            ips: vec![IpAddr::from([127, 0, 0, 1])],
        }
    }
}

/// PEM texts; `ca_key` only when the CA was made here.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: Option<String>,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0:?} is not a valid DNS name for a certificate")]
    DnsName(String),
    #[error("no names: give at least one --dns-name or --ip")]
    NoNames,
    #[error("cannot use the CA: {0}")]
    Ca(rcgen::Error),
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// How long the generated CA lives; serving certificates are renewed more often than that.
const CA_DAYS: i64 = 3650;

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that are behind ours.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

/// A host name a certificate can hold: dot-separated labels of letters, digits and inner
/// hyphens, the first of which may be `*`. rcgen takes any ASCII.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn serving_params(names: &Names, days: u32) -> Result<CertificateParams, CertsError> {
    if names.dns.is_empty() && names.ips.is_empty() {
        return Err(CertsError::NoNames);
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let common_name = names.dns.first().cloned();
    dn.push(
        DnType::CommonName,
        common_name.unwrap_or_else(|| names.ips[0].to_string()),
    );
    params.distinguished_name = dn;
    for name in &names.dns {
        let invalid = || CertsError::DnsName(name.clone());
        if !is_dns_name(name) {
            return Err(invalid());
        }
        let dns = name.clone().try_into().map_err(|_| invalid())?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    for ip in &names.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    Ok(params)
}

/// A serving certificate for `names`, valid `days` days, signed by the given CA (PEM certificate
/// and key) or by a new one.
pub fn issue(names: &Names, days: u32, ca: Option<(&str, &str)>) -> Result<Bundle, CertsError> {
    let params = serving_params(names, days)?;
    let key = KeyPair::generate()?;
    let (cert, ca_cert, ca_key) = match ca {
        Some((ca_cert, ca_key)) => {
            let ca_key_pair = KeyPair::from_pem(ca_key).map_err(CertsError::Ca)?;
            let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key_pair).map_err(CertsError::Ca)?;
            (params.signed_by(&key, &issuer)?, ca_cert.to_string(), None)
        }
        None => {
            let mut ca_params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "jvm-guard development CA");
            ca_params.distinguished_name = dn;
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            ca_params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut ca_params, CA_DAYS as u32);
            let ca_key_pair = KeyPair::generate()?;
            let ca_cert = ca_params.self_signed(&ca_key_pair)?;
            let ca_key = ca_key_pair.serialize_pem();
            let issuer = Issuer::new(ca_params, ca_key_pair);
            (
                params.signed_by(&key, &issuer)?,
                ca_cert.pem(),
                Some(ca_key),
            )
        }
    };
    Ok(Bundle {
        ca_cert,
        ca_key,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A self-signed serving certificate and its key, in PEM (`serve --dev`).
pub fn self_signed(names: &Names, days: u32) -> Result<(String, String), CertsError> {
    let params = serving_params(names, days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `ca.crt`, `tls.crt`, `tls.key` and, for a new CA, `ca.key` into `dir` (created if
/// missing). Keys are readable by the owner only.
pub fn write(dir: &Path, bundle: &Bundle) -> std::io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut files = vec![
        ("ca.crt", &bundle.ca_cert, 0o644),
        ("tls.crt", &bundle.cert, 0o644),
        ("tls.key", &bundle.key, 0o600),
    ];
    if let Some(ca_key) = &bundle.ca_key {
        files.push(("ca.key", ca_key, 0o600));
    }
    let mut written = Vec::new();
    for (name, text, mode) in files {
        let path = dir.join(name);
        // Replace rather than truncate, so an existing file's wider mode is not kept.
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        file.write_all(text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{parse_x509_certificate, X509Certificate};
    use x509_parser::time::ASN1Time;

    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        use pki_types::pem::PemObject;
        pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => {
                    let octets: [u8; 4] = (*ip).try_into().unwrap();
                    IpAddr::from(octets).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_serving_certificate_is_signed_by_the_new_ca() {
        let names = Names {
            dns: vec!["jvm-guard.jvm-guard.svc".into(), "localhost".into()],
            ips: vec![IpAddr::from([127, 0, 0, 1])],
        };
        let bundle = issue(&names, 30, None).unwrap();
        let (ca_der, leaf_der) = (der(&bundle.ca_cert), der(&bundle.cert));
        let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(
            sans(&leaf),
            ["jvm-guard.jvm-guard.svc", "localhost", "127.0.0.1"]
        );
        let days = (leaf.validity().not_after.timestamp() - ASN1Time::now().timestamp()) / 86400;
        assert!((29..=30).contains(&days), "{days}");
        assert!(bundle.ca_key.is_some());
    }

    #[test]
    fn an_existing_ca_signs_a_second_certificate() {
        let first = issue(&Names::default(), 365, None).unwrap();
        let ca = (first.ca_cert.as_str(), first.ca_key.as_deref().unwrap());
        let second = issue(&Names::default(), 365, Some(ca)).unwrap();
        assert_eq!(second.ca_cert, first.ca_cert);
        assert!(second.ca_key.is_none());
        assert_ne!(second.cert, first.cert);
        let ca_der = der(&first.ca_cert);
        let (_, ca) = parse_x509_certificate(&ca_der).unwrap();
        let leaf_der = der(&second.cert);
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        assert_ne!(
            leaf.serial,
            parse_x509_certificate(&der(&first.cert)).unwrap().1.serial
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let no_names = Names {
            dns: vec![],
            ips: vec![],
        };
        assert!(matches!(
            issue(&no_names, 1, None),
            Err(CertsError::NoNames)
        ));
        let bad = Names {
            dns: vec!["not a name".into()],
            ips: vec![],
        };
        assert!(matches!(issue(&bad, 1, None), Err(CertsError::DnsName(_))));
        for name in ["", "a..b", "-a.svc", "a_b.svc", "*.", "a.*.svc"] {
            assert!(!is_dns_name(name), "{name:?}");
        }
        for name in [
            "localhost",
            "jvm-guard.jvm-guard.svc",
            "*.example.com",
            "a1",
        ] {
            assert!(is_dns_name(name), "{name:?}");
        }
        let err = issue(&Names::default(), 1, Some(("junk", "junk"))).unwrap_err();
        assert!(err.to_string().starts_with("cannot use the CA"), "{err}");
    }

    #[test]
    fn writes_the_files_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let bundle = issue(&Names::default(), 1, None).unwrap();
        let written = write(&out, &bundle).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["ca.crt", "tls.crt", "tls.key", "ca.key"]);
        let mode = |n: &str| fs::metadata(out.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("tls.key"), 0o600);
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(
            fs::read_to_string(out.join("tls.crt")).unwrap(),
            bundle.cert
        );
        // Again over the same files.
        write(&out, &bundle).unwrap();
    }
}
