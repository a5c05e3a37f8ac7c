//! `jvm-guard certs`: development certificates written to a directory.

use std::net::IpAddr;
use std::path::PathBuf;

use super::mutate::{read_input, InputError};
use crate::webhook::certs;

/// `jvm-guard certs` (SPEC §5.1).
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, tls.crt, tls.key and, when a new CA is made, ca.key.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A DNS name of the serving certificate; repeatable [default: localhost and 127.0.0.1,
    /// when no --dns-name or --ip is given].
    #[arg(long = "dns-name", value_name = "NAME")]
    pub dns_names: Vec<String>,
    /// An IP address of the serving certificate; repeatable.
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Sign with this CA certificate (PEM) instead of making a new CA; needs --ca-key.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
}

/// Runs `jvm-guard certs`: the paths written.
pub fn run_certs(args: &CertsArgs) -> Result<Vec<PathBuf>, InputError> {
    let names = if args.dns_names.is_empty() && args.ips.is_empty() {
        certs::Names::default()
    } else {
        certs::Names {
            dns: args.dns_names.clone(),
            ips: args.ips.clone(),
        }
    };
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some((read_input(cert)?, read_input(key)?)),
        _ => None,
    };
    let ca_refs = ca.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
    let bundle = certs::issue(&names, args.days, ca_refs).map_err(|e| InputError {
        file: match &args.ca_cert {
            Some(path) if matches!(e, certs::CertsError::Ca(_)) => path.display().to_string(),
            _ => "certs".into(),
        },
        message: e.to_string(),
    })?;
    certs::write(&args.out, &bundle).map_err(|e| InputError {
        file: args.out.display().to_string(),
        message: e.to_string(),
    })
}
