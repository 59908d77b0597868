//! The Kafka security vocabulary, once: the Pipeline's spec, the operator's
//! env vars, the binaries' flags and librdkafka each spell a protocol or a
//! SASL mechanism, and these are their only spellings.

use std::fmt;
use std::str::FromStr;

pub use crate::pipeline::SaslMechanism;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// The protocol a spec asks for: SASL or not, TLS or not.
    pub fn of(sasl: bool, tls: bool) -> Self {
        match (sasl, tls) {
            (false, false) => SecurityProtocol::Plaintext,
            (false, true) => SecurityProtocol::Ssl,
            (true, false) => SecurityProtocol::SaslPlaintext,
            (true, true) => SecurityProtocol::SaslSsl,
        }
    }

    /// The flag and env var spelling (`--kafka-security-protocol sasl-ssl`).
    pub fn cli_name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl-plaintext",
            SecurityProtocol::SaslSsl => "sasl-ssl",
        }
    }

    /// librdkafka's `security.protocol`.
    pub fn librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: Vec<&'static str>,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected one of: {})",
            self.what,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for SecurityProtocol {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.cli_name() == s)
            .ok_or_else(|| UnknownName {
                what: "security protocol",
                name: s.to_string(),
                expected: Self::ALL.iter().map(|p| p.cli_name()).collect(),
            })
    }
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SaslMechanism {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "SASL mechanism",
                name: s.to_string(),
                expected: Self::ALL.iter().map(|m| m.as_str()).collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips() {
        // (sasl, tls, flag spelling, librdkafka spelling)
        let cases = [
            (false, false, "plaintext", "plaintext"),
            (false, true, "ssl", "ssl"),
            (true, false, "sasl-plaintext", "sasl_plaintext"),
            (true, true, "sasl-ssl", "sasl_ssl"),
        ];
        for (sasl, tls, cli, rd) in cases {
            let p = SecurityProtocol::of(sasl, tls);
            assert_eq!((p.cli_name(), p.librdkafka(), p.uses_sasl()), (cli, rd, sasl));
            assert_eq!(cli.parse::<SecurityProtocol>(), Ok(p));
        }
        for m in SaslMechanism::ALL {
            assert_eq!(m.as_str().parse::<SaslMechanism>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(
                json,
                format!("\"{}\"", m.as_str()),
                "the spec spells it as the clients do"
            );
        }
        let err = "sasl_ssl".parse::<SecurityProtocol>().unwrap_err().to_string();
        assert!(
            err.contains("expected one of: plaintext, ssl, sasl-plaintext, sasl-ssl"),
            "{err}"
        );
    }
}
