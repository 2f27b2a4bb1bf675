//! Kubernetes quantities (`1Gi`, `500M`, `1e9`) as bytes, exactly: the
//! store's size is compared with its volume claims' (`store_growth`) and
//! checked by `validate`. Pure.

/// The bytes of quantity `text` (an optional `+`, a decimal number and an
/// optional suffix: `Ki`..`Ei`, `m`, `k`..`E`, or an exponent; the API
/// server writes `1.5` back as `1500m`), rounded up to a whole byte; `None`
/// when it is not a quantity, is negative or does not fit.
pub fn bytes(text: &str) -> Option<u128> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') {
        return None;
    }
    let digits: u128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let binary = |power: u32| (1u128 << power, 1);
    let decimal = |power: u32| (10u128.pow(power), 1);
    let (multiplier, divisor) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        exponent => {
            let power: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            let factor = 10u128.checked_pow(power.unsigned_abs())?;
            if power >= 0 { (factor, 1) } else { (1, factor) }
        }
    };
    Some(digits.checked_mul(multiplier)?.div_ceil(scale.checked_mul(divisor)?))
}

/// Whether `text` is a positive quantity of bytes.
pub fn positive(text: &str) -> bool {
    bytes(text).is_some_and(|b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("1073741824"), bytes("1Gi"));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("2k"), Some(2000));
        assert_eq!(bytes("1e9"), Some(1_000_000_000));
        assert_eq!(bytes("15E-1"), Some(2), "rounded up to a whole byte");
        assert_eq!(bytes(".5Ki"), Some(512));
        assert_eq!(bytes("1500m"), Some(2), "1.5 as the API server writes it back, rounded up");
        assert_eq!(bytes("+1Gi"), bytes("1Gi"));
        assert!(bytes("2Gi") > bytes("2G"));
        for bad in ["", "lots", "1GB", "1..2Gi", "1.2.3", "Gi", "-1Gi", "1e", "99999999999999999999999999999999999999999Ei"] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
        assert!(!positive("0") && !positive("0Gi") && positive("1"));
    }
}
