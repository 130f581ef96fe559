//! Sizes ("48GiB") and durations ("30s", "14d") as the inventory and the flags write them.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A byte count written with a unit: `512MiB`, `48GiB`, `400GB`, `1TiB`, or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

const SIZE_HINT: &str =
    "expected a size like \"48GiB\" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)";

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(SIZE_HINT.into());
        }
        let n: u64 = num.parse().map_err(|_| SIZE_HINT.to_string())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000u64.pow(2),
            "GB" => 1000u64.pow(3),
            "TB" => 1000u64.pow(4),
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(SIZE_HINT.into()),
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size {t:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if n >= m && n % m == 0 {
                return write!(f, "{}{unit}", n / m);
            }
        }
        write!(f, "{n}B")
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"48GiB\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                u64::try_from(n).map(Size).map_err(|_| E::custom(SIZE_HINT))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration written with units: `500ms`, `30s`, `5m`, `1h30m`, `14d`, `2w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn std(self) -> std::time::Duration {
        self.0
    }
    pub fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }
}

const DURATION_HINT: &str =
    "expected a duration like \"30s\", \"5m\", \"1h30m\" or \"14d\" (units ms, s, m, h, d, w)";

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DURATION_HINT.into());
        }
        let mut total_ms: u128 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(DURATION_HINT.into());
            }
            let n: u128 = rest[..digits]
                .parse()
                .map_err(|_| DURATION_HINT.to_string())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let ms: u128 = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                _ => return Err(DURATION_HINT.into()),
            };
            total_ms = n
                .checked_mul(ms)
                .and_then(|v| total_ms.checked_add(v))
                .filter(|v| *v <= u64::MAX as u128)
                .ok_or_else(|| format!("duration {t:?} is too large"))?;
        }
        Ok(Duration(std::time::Duration::from_millis(total_ms as u64)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, m) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= m {
                write!(f, "{}{unit}", ms / m)?;
                ms %= m;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("48GiB".parse::<Size>().unwrap().bytes(), 48 << 30);
        assert_eq!("400GB".parse::<Size>().unwrap().bytes(), 400_000_000_000);
        assert_eq!("1024".parse::<Size>().unwrap().bytes(), 1024);
        assert_eq!(Size(48 << 30).to_string(), "48GiB");
        for bad in [
            "",
            "GiB",
            "12 parsecs",
            "-1GiB",
            "1.5GiB",
            "99999999999999999999TiB",
        ] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<Duration>().unwrap().std().as_millis();
        assert_eq!(d("30s"), 30_000);
        assert_eq!(d("1h30m"), 5_400_000);
        assert_eq!(d("14d"), 14 * 86_400_000);
        assert_eq!(d("250ms"), 250);
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m");
        for bad in [
            "",
            "s",
            "10",
            "10x",
            "1.5h",
            "-3s",
            "999999999999999999999w",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = s.parse::<Size>();
            let _ = s.parse::<Duration>();
        }

        #[test]
        fn duration_display_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration(std::time::Duration::from_millis(ms));
            proptest::prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }
}
