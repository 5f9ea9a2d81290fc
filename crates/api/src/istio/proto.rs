//! Protobuf-JSON details of Istio's types: enums written as names (or their
//! numbers), 64-bit integers written as numbers or strings, `Percent`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Istio enum: deserialized from its name or its number (protojson accepts
/// both), serialized as its name. The first variant is the proto default.
macro_rules! proto_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($variant:ident = $num:literal => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_name(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            pub fn from_number(n: i64) -> Option<$name> {
                match n { $($num => Some($name::$variant),)+ _ => None }
            }
        }

        impl Default for $name {
            fn default() -> $name {
                [$($name::$variant),+][0]
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                $crate::istio::proto::deserialize_enum(d, $what, $name::NAMES, $name::from_name, $name::from_number)
            }
        }
    };
}
pub(crate) use proto_enum;

pub(crate) fn deserialize_enum<'de, D, T>(
    d: D,
    what: &'static str,
    names: &'static [&'static str],
    by_name: fn(&str) -> Option<T>,
    by_number: fn(i64) -> Option<T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        what: &'static str,
        names: &'static [&'static str],
        by_name: fn(&str) -> Option<T>,
        by_number: fn(i64) -> Option<T>,
    }
    impl<T> V<T> {
        fn unknown<E: de::Error>(&self, shown: &str) -> E {
            E::custom(format!(
                "unknown {} {shown}: expected one of {}",
                self.what,
                self.names.join(", ")
            ))
        }
    }
    impl<'de, T> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {} (one of {})", self.what, self.names.join(", "))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.by_name)(s).ok_or_else(|| self.unknown(&format!("{s:?}")))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
            (self.by_number)(n).ok_or_else(|| self.unknown(&n.to_string()))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
            match i64::try_from(n) {
                Ok(n) => self.visit_i64(n),
                Err(_) => Err(self.unknown(&n.to_string())),
            }
        }
    }
    d.deserialize_any(V {
        what,
        names,
        by_name,
        by_number,
    })
}

/// A `uint64` field: protojson writes them as strings and accepts numbers.
pub mod u64_or_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Some(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u64::try_from(n)
                    .map(Some)
                    .map_err(|_| E::custom(format!("{n} is negative")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse()
                    .map(Some)
                    .map_err(|_| E::custom(format!("{s:?} is not a non-negative integer")))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(V)
    }
}

/// `istio.networking.v1alpha3.Percent`: a double in [0, 100].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    proto_enum!(Color, "color" { Red = 0 => "RED", Blue = 1 => "BLUE" });

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Holder {
        c: Color,
        #[serde(default, with = "u64_or_string")]
        n: Option<u64>,
    }

    #[test]
    fn enums_by_name_or_number() {
        let h: Holder = serde_json::from_str(r#"{"c":"BLUE"}"#).unwrap();
        assert_eq!(h.c, Color::Blue);
        let h: Holder = serde_json::from_str(r#"{"c":0,"n":"12"}"#).unwrap();
        assert_eq!((h.c, h.n), (Color::Red, Some(12)));
        let e = serde_json::from_str::<Holder>(r#"{"c":"GREEN"}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown color \"GREEN\": expected one of RED, BLUE"),
            "{e}"
        );
        assert_eq!(
            serde_json::to_string(&Holder {
                c: Color::Blue,
                n: Some(3)
            })
            .unwrap(),
            r#"{"c":"BLUE","n":3}"#
        );
        assert_eq!(Color::default(), Color::Red);
    }
}
