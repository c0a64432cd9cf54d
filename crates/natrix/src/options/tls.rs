//! `tls { ... }` blocks (top level and `cluster { tls { } }`), read as nats-server's `parseTLS`
//! reads them and with its error texts; the `--tls*` flags, which replace the file's block as
//! nats-server's `overrideTLS` does; and the checks that need the files themselves.

use std::path::PathBuf;
use std::time::Duration;

use natrix_conf::{Entry, Value, parse_duration};
use natrix_server::tls::{ClientTls, ClusterTls};
use natrix_server::{DEFAULT_TLS_TIMEOUT, TlsConfig};

use super::{FieldError, Mapper, Settings};
use crate::compat::{self, Support};

/// Which listener a `tls { }` block configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsBlock {
    Client,
    Cluster,
}

/// The `--tls`, `--tlscert`, `--tlskey`, `--tlsverify` and `--tlscacert` flags as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFlags {
    pub tls: Option<bool>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub verify: Option<bool>,
    pub ca: Option<String>,
}

impl TlsFlags {
    fn any(&self) -> bool {
        self.tls.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.verify.is_some()
            || self.ca.is_some()
    }
}

impl Mapper<'_> {
    /// A `tls { }` block; `None` (with the errors recorded) if it cannot be used.
    pub(super) fn tls(&mut self, entry: &Entry, block: TlsBlock) -> Option<TlsConfig> {
        let map = self.map(entry)?;
        let mut cert_file = None;
        let mut key_file = None;
        let mut ca_file = None;
        let mut verify = false;
        let mut timeout = DEFAULT_TLS_TIMEOUT;
        let mut handshake_first = false;
        for e in map {
            let key = e.key.to_ascii_lowercase();
            match key.as_str() {
                "cert_file" => cert_file = self.string(e).map(PathBuf::from),
                "key_file" => key_file = self.string(e).map(PathBuf::from),
                "ca_file" => ca_file = self.string(e).map(PathBuf::from),
                "verify" => verify = self.bool(e).unwrap_or(verify),
                "timeout" => timeout = self.tls_timeout(e).unwrap_or(timeout),
                // nats-server 2.10's names; its fallback form (a delay, or "auto") is not here.
                "handshake_first" | "first" | "immediate" => match (block, &e.value.value) {
                    (TlsBlock::Client, Value::Bool(b)) => handshake_first = *b,
                    (TlsBlock::Client, _) => self.error(
                        e,
                        "handshake_first: only true or false are supported by natrix \
                         (no fallback delay)",
                    ),
                    (TlsBlock::Cluster, _) => self.unsupported_or_ignored(e, Support::Ignored),
                },
                _ => match compat::tls(&key) {
                    Some(support) => self.unsupported_or_ignored(e, support),
                    None if e.is_used_variable() => {}
                    None => self.error(
                        e,
                        format!("error parsing tls config, unknown field [{:?}]", e.key),
                    ),
                },
            }
        }
        let Some(cert_file) = cert_file else {
            self.error(entry, "missing 'cert_file' in TLS configuration");
            return None;
        };
        let Some(key_file) = key_file else {
            self.error(entry, "missing 'key_file' in TLS configuration");
            return None;
        };
        Some(TlsConfig {
            cert_file,
            key_file,
            ca_file,
            verify,
            timeout,
            handshake_first,
        })
    }

    /// `timeout`: seconds (integer or fractional) or a duration string; 0 is the default.
    fn tls_timeout(&mut self, entry: &Entry) -> Option<Duration> {
        let parsed = match &entry.value.value {
            Value::Int(secs) => Duration::try_from_secs_f64(*secs as f64).ok(),
            Value::Float(secs) => Duration::try_from_secs_f64(*secs).ok(),
            Value::String(text) => parse_duration(text).ok(),
            _ => None,
        };
        match parsed {
            Some(d) if d.is_zero() => Some(DEFAULT_TLS_TIMEOUT),
            Some(d) => Some(d),
            None => {
                self.error(entry, "error parsing tls config, 'timeout' wrong type");
                None
            }
        }
    }
}

impl Settings {
    /// Lays the `--tls*` flags over the file's `tls { }`, as nats-server: `--tls=false`
    /// turns TLS off; any other of them replaces the block with one built from the flags alone
    /// (keeping the file's `timeout` and `handshake_first`), which then needs a certificate
    /// and a key.
    pub fn override_tls(&mut self, flags: &TlsFlags) -> Result<(), String> {
        if flags.tls == Some(false) {
            self.server.tls = None;
            return Ok(());
        }
        if !flags.any() {
            return Ok(());
        }
        let Some(cert) = &flags.cert else {
            return Err("TLS Server certificate must be present and valid".into());
        };
        let Some(key) = &flags.key else {
            return Err("TLS Server private key must be present and valid".into());
        };
        let previous = self.server.tls.take();
        self.server.tls = Some(TlsConfig {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            ca_file: flags.ca.as_ref().map(PathBuf::from),
            verify: flags.verify == Some(true),
            timeout: previous.as_ref().map_or(DEFAULT_TLS_TIMEOUT, |t| t.timeout),
            handshake_first: previous.is_some_and(|t| t.handshake_first),
        });
        Ok(())
    }

    /// What [`Settings::finish`] settles about TLS: nats-server's authorization timeout default
    /// with TLS (the TLS timeout plus a second), and whether the files load.
    pub(super) fn finish_tls(&mut self, errors: &mut Vec<FieldError>) {
        if let Some(tls) = &self.server.tls {
            if !self.auth_timeout_set {
                self.server.limits.auth_timeout = tls.timeout + Duration::from_secs(1);
            }
            if let Err(err) = ClientTls::load(tls) {
                errors.push(FieldError {
                    pos: None,
                    message: format!("tls: {err}"),
                });
            }
        }
        if let Some(tls) = self.server.cluster.as_ref().and_then(|c| c.tls.as_ref())
            && let Err(err) = ClusterTls::load(tls)
        {
            errors.push(FieldError {
                pos: None,
                message: format!("cluster tls: {err}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use natrix_conf::Loader;

    use super::*;
    use crate::options::OptionsError;

    /// Applies `text` to default settings: the settings, or every error message.
    fn apply(text: &str) -> Result<Settings, Vec<String>> {
        let map = Loader::new()
            .parse_str(text, "t.conf", None)
            .map_err(|e| vec![e.to_string()])?;
        let mut settings = Settings::default();
        match settings.apply_map(&map) {
            Ok(()) => Ok(settings),
            Err(OptionsError::Invalid(errors)) => {
                Err(errors.iter().map(ToString::to_string).collect())
            }
            Err(other) => Err(vec![other.to_string()]),
        }
    }

    #[test]
    fn a_tls_block_maps_every_supported_field() {
        let s = apply(
            "tls {\n  cert_file: \"/c.pem\"\n  key_file: \"/k.pem\"\n  ca_file: \"/ca.pem\"\n  verify: true\n  timeout: 0.5\n  handshake_first: true\n}\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            s.server.tls,
            Some(TlsConfig {
                cert_file: "/c.pem".into(),
                key_file: "/k.pem".into(),
                ca_file: Some("/ca.pem".into()),
                verify: true,
                timeout: Duration::from_millis(500),
                handshake_first: true,
            })
        );
    }

    #[test]
    fn the_cluster_block_takes_its_own_tls() {
        let s = apply("cluster {\n  listen: 127.0.0.1:6222\n  tls { cert_file: c, key_file: k, ca_file: ca, timeout: 3 }\n}\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let cluster = s.server.cluster.unwrap_or_default();
        assert_eq!(
            cluster.tls,
            Some(TlsConfig {
                ca_file: Some("ca".into()),
                timeout: Duration::from_secs(3),
                ..TlsConfig::new("c", "k")
            })
        );
        assert_eq!(s.server.tls, None, "the client listener stays plain");
    }

    #[test]
    fn timeouts_are_seconds_or_durations_and_zero_is_the_default() {
        let timeout = |value: &str| {
            apply(&format!(
                "tls {{ cert_file: c, key_file: k, timeout: {value} }}\n"
            ))
            .map(|s| s.server.tls.map(|t| t.timeout))
        };
        assert_eq!(timeout("3"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(timeout("1.5"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(timeout("\"250ms\""), Ok(Some(Duration::from_millis(250))));
        assert_eq!(timeout("0"), Ok(Some(DEFAULT_TLS_TIMEOUT)));
        assert_eq!(
            timeout("\"soon\""),
            Err(vec![
                "t.conf:1:34: error parsing tls config, 'timeout' wrong type".to_string()
            ])
        );
    }

    #[test]
    fn mistakes_are_reported_with_nats_server_texts() {
        let cases = [
            (
                "tls { key_file: k }\n",
                "t.conf:1:1: missing 'cert_file' in TLS configuration",
            ),
            (
                "tls { cert_file: c }\n",
                "t.conf:1:1: missing 'key_file' in TLS configuration",
            ),
            (
                "tls { cert_file: c, key_file: k, foo: 1 }\n",
                "t.conf:1:34: error parsing tls config, unknown field [\"foo\"]",
            ),
            (
                "tls { cert_file: c, key_file: k, verify_and_map: true }\n",
                "t.conf:1:34: \"verify_and_map\" is not supported by natrix yet",
            ),
            (
                "tls { cert_file: c, key_file: k, handshake_first: \"300ms\" }\n",
                "t.conf:1:34: handshake_first: only true or false are supported by natrix (no fallback delay)",
            ),
            (
                "tls: true\n",
                "t.conf:1:1: invalid value for \"tls\": expected a map, got boolean",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                apply(text).err(),
                Some(vec![expected.to_string()]),
                "{text}"
            );
        }
    }

    #[test]
    fn options_rustls_cannot_apply_are_ignored_with_a_warning() {
        let s = apply("tls { cert_file: c, key_file: k, cipher_suites: [\"TLS_AES_128_GCM_SHA256\"] }\ncluster { tls { cert_file: c, key_file: k, ca_file: ca, handshake_first: true } }\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("\"cipher_suites\" is not implemented by natrix"));
        assert!(s.warnings[1].contains("\"handshake_first\" is not implemented by natrix"));
    }

    #[test]
    fn tls_flags_replace_the_block_as_nats_server_does() {
        let mut s = Settings::default();
        s.server.tls = Some(TlsConfig {
            timeout: Duration::from_secs(5),
            handshake_first: true,
            verify: true,
            ..TlsConfig::new("file.pem", "file-key.pem")
        });
        let flags = TlsFlags {
            cert: Some("flag.pem".into()),
            key: Some("flag-key.pem".into()),
            ..TlsFlags::default()
        };
        assert_eq!(s.override_tls(&flags), Ok(()));
        assert_eq!(
            s.server.tls,
            Some(TlsConfig {
                timeout: Duration::from_secs(5),
                handshake_first: true,
                ..TlsConfig::new("flag.pem", "flag-key.pem")
            }),
            "cert, key, CA and verify come from the flags alone"
        );

        let only_verify = TlsFlags {
            verify: Some(true),
            ..TlsFlags::default()
        };
        assert_eq!(
            s.override_tls(&only_verify),
            Err("TLS Server certificate must be present and valid".into())
        );
        let no_key = TlsFlags {
            tls: Some(true),
            cert: Some("c".into()),
            ..TlsFlags::default()
        };
        assert_eq!(
            s.override_tls(&no_key),
            Err("TLS Server private key must be present and valid".into())
        );

        let off = TlsFlags {
            tls: Some(false),
            cert: Some("c".into()),
            ..TlsFlags::default()
        };
        assert_eq!(s.override_tls(&off), Ok(()));
        assert_eq!(s.server.tls, None, "--tls=false turns TLS off");

        assert_eq!(s.override_tls(&TlsFlags::default()), Ok(()));
        assert_eq!(s.server.tls, None, "no flag, no change");
    }
}
