//! What the store's rows are: the kinds of outbox and inbox rows, stored as
//! their names. A name the host does not know is an error, never a guess:
//! a row written by a newer host must not be sent as something it is not.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;

/// A kind name the host does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} kind {name:?}")]
pub struct UnknownKind {
    what: &'static str,
    pub name: String,
}

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutKind {
    /// Published in Hive's envelope, so that the message keeps its id
    /// across retries and Hive receivers drop duplicates.
    Publish,
    /// Published as the bare payload, for topics shared with peers that are
    /// not Hive nodes (they would see the envelope's bytes).
    PublishPlain,
    Direct,
}

impl OutKind {
    const ALL: [OutKind; 3] = [OutKind::Publish, OutKind::PublishPlain, OutKind::Direct];

    pub fn as_str(self) -> &'static str {
        match self {
            OutKind::Publish => "publish",
            OutKind::PublishPlain => "publish_plain",
            OutKind::Direct => "direct",
        }
    }

    /// A pubsub message, enveloped or not.
    pub fn is_publish(self) -> bool {
        matches!(self, OutKind::Publish | OutKind::PublishPlain)
    }
}

/// What an inbox row is: a received message or direct message, or an
/// outbox message that will never be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InKind {
    Message,
    Direct,
    /// Its time to live ran out before the daemon took it.
    Expired,
    /// The daemon refused it for good.
    Failed,
}

impl InKind {
    pub const ALL: [InKind; 4] = [
        InKind::Message,
        InKind::Direct,
        InKind::Expired,
        InKind::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InKind::Message => "message",
            InKind::Direct => "direct",
            InKind::Expired => "expired",
            InKind::Failed => "failed",
        }
    }
}

/// `as_str`, `FromStr`, `Display` and the SQL conversions of a kind enum.
macro_rules! named_kind {
    ($kind:ty, $what:literal) => {
        impl FromStr for $kind {
            type Err = UnknownKind;

            fn from_str(name: &str) -> Result<Self, UnknownKind> {
                <$kind>::ALL
                    .into_iter()
                    .find(|k| k.as_str() == name)
                    .ok_or_else(|| UnknownKind {
                        what: $what,
                        name: name.to_owned(),
                    })
            }
        }

        impl fmt::Display for $kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $kind {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $kind {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownKind| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

named_kind!(OutKind, "outbox");
named_kind!(InKind, "inbox");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for kind in OutKind::ALL {
            assert_eq!(kind.as_str().parse::<OutKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for kind in InKind::ALL {
            assert_eq!(kind.as_str().parse::<InKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        // Formerly any unknown outbox kind was published.
        let err = "broadcast".parse::<OutKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown outbox kind \"broadcast\"");
        assert!("Message".parse::<InKind>().is_err());
        assert!("".parse::<InKind>().is_err());
    }

    #[test]
    fn a_row_of_an_unknown_kind_fails_to_load() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let known: OutKind = c.query_row("SELECT 'direct'", [], |r| r.get(0)).unwrap();
        assert_eq!(known, OutKind::Direct);
        let unknown = c.query_row("SELECT 'broadcast'", [], |r| r.get::<_, OutKind>(0));
        assert!(unknown.is_err());
    }
}
