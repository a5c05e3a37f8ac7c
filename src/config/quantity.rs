//! Kubernetes resource quantities (`384Mi`, `1.5Gi`, `1e9`), parsed to whole bytes.
//! Only what memory settings need: non-negative values, binary and decimal suffixes.

use std::fmt;
use std::str::FromStr;

/// A memory quantity: the text as written (so manifests keep the user's spelling) and its value
/// in bytes, rounded down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a quantity (expected e.g. 384Mi, 1Gi, 500M)")]
pub struct QuantityError(pub String);

impl Quantity {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || QuantityError(s.to_string());
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // Work in units of 10^-frac_digits so "1.5Gi" stays exact.
        let frac_digits = frac_part.len() as u32;
        if frac_digits > 9 || int_part.len() > 20 {
            return Err(err());
        }
        // At most 29 digits: within u128. Both parts are ASCII digits (split above).
        let digits = int_part.bytes().chain(frac_part.bytes());
        let mantissa = digits.fold(0u128, |m, d| m * 10 + u128::from(d - b'0'));
        let scale = 10u128.pow(frac_digits);
        let (mul, div): (u128, u128) = match suffix {
            "" => (1, 1),
            "m" => (1, 1000),
            "k" => (1_000, 1),
            "M" => (1_000_000, 1),
            "G" => (1_000_000_000, 1),
            "T" => (1_000_000_000_000, 1),
            "P" => (1_000_000_000_000_000, 1),
            "E" => (1_000_000_000_000_000_000, 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            "Ei" => (1 << 60, 1),
            exp if exp.starts_with(['e', 'E']) => {
                let e: u32 = exp[1..].parse().map_err(|_| err())?;
                if e > 18 {
                    return Err(err());
                }
                (10u128.pow(e), 1)
            }
            _ => return Err(err()),
        };
        let bytes = mantissa
            .checked_mul(mul)
            .map(|v| v / scale / div)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(err)?;
        Ok(Quantity {
            text: text.to_string(),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("384Mi", 384 << 20)]
    #[case("1Gi", 1 << 30)]
    #[case("1.5Gi", 3 << 29)]
    #[case("500M", 500_000_000)]
    #[case("1e9", 1_000_000_000)]
    #[case("2048", 2048)]
    #[case("1500m", 1)]
    #[case("0", 0)]
    #[case(" 64Ki ", 64 << 10)]
    fn parses(#[case] text: &str, #[case] bytes: u64) {
        assert_eq!(text.parse::<Quantity>().unwrap().bytes(), bytes);
    }

    #[rstest]
    #[case("")]
    #[case("Mi")]
    #[case("-1Gi")]
    #[case("1.2.3")]
    #[case("12XB")]
    #[case("1 Gi")]
    #[case("99999999999999999999Ei")]
    #[case("1e99")]
    fn rejects(#[case] text: &str) {
        assert!(
            text.parse::<Quantity>().is_err(),
            "{text} should be rejected"
        );
    }
}
