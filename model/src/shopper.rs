//! Who shops and how: the customer's gender, the session's device and
//! traffic channel. Each value has a stable smallint key, the primary key of
//! its row in the warehouse's `dim_device` / `dim_channel` (seeded by
//! migration 0006; a test keeps them in step), with 0 for events of schema
//! version 1, which do not say.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The key of "not known" in every shopper dimension.
pub const UNKNOWN_KEY: i16 = 0;

macro_rules! shopper_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $key:literal, $text:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire and warehouse spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The warehouse dimension key (never [`UNKNOWN_KEY`]).
            pub fn key(self) -> i16 {
                match self {
                    $($name::$variant => $key,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

shopper_enum!(
    /// As the customer gave it at sign-up.
    Gender {
        Female = 1, "female";
        Male = 2, "male";
        Unspecified = 3, "unspecified";
    }
);

shopper_enum!(
    /// The device a session runs on (the report's five types).
    Device {
        Mobile = 1, "mobile";
        Pc = 2, "pc";
        Laptop = 3, "laptop";
        Tablet = 4, "tablet";
        SmartTv = 5, "smart_tv";
    }
);

shopper_enum!(
    /// Where a session came from.
    Channel {
        Direct = 1, "direct";
        OrganicSearch = 2, "organic_search";
        PaidSearch = 3, "paid_search";
        Social = 4, "social";
        Email = 5, "email";
        Referral = 6, "referral";
    }
);

/// The key of an optional value: [`UNKNOWN_KEY`] when absent.
pub fn key_of<T>(value: Option<T>, key: impl Fn(T) -> i16) -> i16 {
    value.map_or(UNKNOWN_KEY, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_nonzero_and_spellings_round_trip() {
        fn check<T: Copy + Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(
            all: &[T],
            key: impl Fn(T) -> i16,
            text: impl Fn(T) -> &'static str,
        ) {
            let mut keys: Vec<i16> = all.iter().map(|v| key(*v)).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), all.len(), "unique keys");
            assert!(!keys.contains(&UNKNOWN_KEY));
            for v in all {
                let json = serde_json::to_string(v).unwrap();
                assert_eq!(json, format!("\"{}\"", text(*v)));
                assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
            }
        }
        check(Gender::ALL, Gender::key, Gender::as_str);
        check(Device::ALL, Device::key, Device::as_str);
        check(Channel::ALL, Channel::key, Channel::as_str);
        assert_eq!(key_of(None::<Device>, Device::key), UNKNOWN_KEY);
        assert_eq!(key_of(Some(Device::SmartTv), Device::key), 5);
    }
}
