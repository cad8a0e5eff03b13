//! Who is calling (security.md §4): the identity nats-server vouches for.
//!
//! With JWT auth every agent lives in a tenant account that imports the mq9 service from the
//! broker's account, with `share: true`. Each request crossing that import carries a
//! `Nats-Request-Info` header written by nats-server itself (a client's own copy is
//! overwritten), holding the caller's account (`acc`), user public key (`user`), the user JWT's
//! name (`name_tag`) and tags (`tags`). The operator tags every Mailbox user
//! `mq9-address:<address>`, so the broker learns the caller's own mailbox from a signed claim.
//! The client-chosen connection `name` is never trusted.
//!
//! Without JWT auth (`mq9 dev`, plain nats-server) any client could write the header, so the
//! broker only reads it when told to (`--trust-request-info`) and callers are otherwise
//! anonymous: [`Caller`] is then absent and behaviour is as without identity.

use serde::Deserialize;

use super::ProtoError;

/// The header nats-server writes on requests that cross a service import.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";
/// The header the broker writes on every stored message whose sender it knows. Senders cannot
/// set it: `mq9-*` headers are options, never stored as sent.
pub const SENDER_HEADER: &str = "mq9-sender";
/// The user-JWT tag naming a Mailbox user's own address (`mq9-address:<address>`).
pub const ADDRESS_TAG: &str = "mq9-address:";

/// The caller of one request, as nats-server reports it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    /// The account's public key (`A…`).
    account: String,
    /// The user's public key (`U…`): changes whenever credentials are re-minted.
    user: Option<String>,
    /// The user JWT's `name` (the operator writes `<namespace>/<mailbox>`).
    name: Option<String>,
    /// The caller's own mailbox, from its signed `mq9-address:` tag.
    address: Option<String>,
}

/// The part of nats-server's `ClientInfo` that identifies a caller.
#[derive(Deserialize)]
struct RequestInfo {
    #[serde(default)]
    acc: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    name_tag: String,
    #[serde(default)]
    tags: Vec<String>,
}

impl Caller {
    /// Reads the `Nats-Request-Info` header value. A header that is present but unreadable, or
    /// names no account, is refused: it cannot come from nats-server, and treating it as
    /// anonymous would grant the broker-account's trust.
    pub fn from_request_info(value: &str) -> Result<Caller, ProtoError> {
        let invalid = || ProtoError::bad_request(format!("invalid {REQUEST_INFO_HEADER} header"));
        let info: RequestInfo = serde_json::from_str(value).map_err(|_| invalid())?;
        if info.acc.is_empty() {
            return Err(invalid());
        }
        let address = info
            .tags
            .iter()
            .find_map(|tag| tag.strip_prefix(ADDRESS_TAG))
            .filter(|address| super::address::validate(address).is_ok())
            .map(str::to_owned);
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        Ok(Caller {
            account: info.acc,
            user: non_empty(info.user),
            name: non_empty(info.name_tag),
            address,
        })
    }

    /// The caller's account (its public key with JWT auth): the tenant it belongs to.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The caller's own mailbox address, when its credentials are a Mailbox's.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// The identity that owns what this caller registers: stable across re-minted credentials
    /// (the address, else the JWT name within its account), the user key only as a last resort.
    pub fn owner(&self) -> String {
        match (&self.address, &self.name, &self.user) {
            (Some(address), _, _) => format!("mailbox:{address}"),
            (None, Some(name), _) => format!("name:{}/{name}", self.account),
            (None, None, Some(user)) => format!("user:{user}"),
            (None, None, None) => format!("account:{}", self.account),
        }
    }

    /// The `mq9-sender` value: where a recipient can answer (the sender's address) when the
    /// sender is a Mailbox, else the most specific name nats-server gave.
    pub fn sender(&self) -> &str {
        self.address
            .as_deref()
            .or(self.name.as_deref())
            .or(self.user.as_deref())
            .unwrap_or(&self.account)
    }
}

/// Public keys only: an address is a credential on a broker without auth, so it is never
/// printed.
impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("account", &self.account)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"{"acc":"ATENANT","rtt":1234,"start":"2026-11-29T10:00:00Z",
        "host":"127.0.0.1","id":7,"svc":"ABROKER","user":"UAGENT","name":"chosen-by-client",
        "name_tag":"team-a/translator","tags":["mq9-address:team.translator","other"],
        "lang":"rust","ver":"0.51.0","server":"n1"}"#;

    #[test]
    fn a_mailbox_user_is_known_by_its_signed_address_tag() {
        let caller = Caller::from_request_info(INFO).unwrap();
        assert_eq!(caller.address(), Some("team.translator"));
        assert_eq!(caller.sender(), "team.translator");
        assert_eq!(caller.owner(), "mailbox:team.translator");
        let printed = format!("{caller:?}");
        assert!(printed.contains("UAGENT") && !printed.contains("translator"));
    }

    #[test]
    fn other_users_fall_back_to_their_jwt_name_never_the_connection_name() {
        let info =
            r#"{"acc":"ABROKER","user":"UOP","name":"spoofed","name_tag":"agents/operator"}"#;
        let caller = Caller::from_request_info(info).unwrap();
        assert_eq!(caller.address(), None);
        assert_eq!(caller.sender(), "agents/operator");
        assert_eq!(caller.owner(), "name:ABROKER/agents/operator");
        let bare = Caller::from_request_info(r#"{"acc":"AX","user":"UY"}"#).unwrap();
        assert_eq!((bare.sender(), bare.owner().as_str()), ("UY", "user:UY"));
    }

    #[test]
    fn a_bad_address_tag_is_not_an_identity() {
        let info = r#"{"acc":"AX","user":"UY","tags":["mq9-address:Not Valid"]}"#;
        assert_eq!(Caller::from_request_info(info).unwrap().address(), None);
    }

    #[test]
    fn unreadable_headers_are_refused() {
        for bad in ["", "{", "[]", r#"{"user":"UY"}"#, r#"{"acc":""}"#] {
            assert!(Caller::from_request_info(bad).is_err(), "{bad:?}");
        }
    }
}
