//! Who may do what: named API tokens, their roles, and the one table of
//! routes and the role each needs (DESIGN.md, "People"). The table is the
//! documentation too: `redrive serve` checks every request against it, a
//! test walks it with every role, and `docs` print it.

use std::fmt;

use axum::http::Method;
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Every GET.
    Reader,
    /// A reader that may also enqueue.
    Sender,
    /// A reader that may also act on messages and destinations: redrive,
    /// discard, edit, resolve, bulk redrive, pause, resume.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Reader, Role::Sender, Role::Operator, Role::Admin];

    /// Its name in the configuration and in errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Sender => "sender",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a role's name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// True when this role may do what `need` names.
    pub const fn allows(self, need: Need) -> bool {
        matches!(
            (self, need),
            (Role::Admin, _)
                | (_, Need::Read)
                | (Role::Sender, Need::Send)
                | (Role::Operator, Need::Operate)
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route does, and so which roles may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Reads: every role.
    Read,
    /// Enqueues: `sender` and `admin`.
    Send,
    /// Changes what is stored: `operator` and `admin`.
    Operate,
}

impl Need {
    /// The least role that has it, for the 403's words.
    pub const fn least_role(self) -> &'static str {
        match self {
            Need::Read => "reader",
            Need::Send => "sender (or admin)",
            Need::Operate => "operator (or admin)",
        }
    }
}

/// Every route of the API and the dashboard that needs a token, and what it
/// needs. Paths are axum's route patterns.
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("POST", "/v1/messages", Need::Send),
    ("GET", "/v1/messages", Need::Read),
    ("GET", "/v1/messages/{id}", Need::Read),
    ("PATCH", "/v1/messages/{id}", Need::Operate),
    ("POST", "/v1/messages/{id}/redrive", Need::Operate),
    ("POST", "/v1/messages/{id}/discard", Need::Operate),
    ("POST", "/v1/messages/{id}/resolve", Need::Operate),
    ("POST", "/v1/dead-letters/redrive", Need::Operate),
    ("GET", "/v1/destinations", Need::Read),
    ("POST", "/v1/destinations/{name}/pause", Need::Operate),
    ("POST", "/v1/destinations/{name}/resume", Need::Operate),
    ("GET", "/v1/policies/{name}", Need::Read),
    ("GET", "/v1/report", Need::Read),
    ("GET", "/v1/audit", Need::Read),
    ("GET", "/openapi.json", Need::Read),
];

/// What `method path` (a route pattern) needs; `None` for a route not in
/// the table, which is refused (a route added without its line here must
/// fail its test, not open up).
pub fn need_of(method: &Method, pattern: &str) -> Option<Need> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *p == pattern && method.as_str() == *m)
        .map(|(_, _, n)| *n)
}

/// A configured token.
#[derive(Clone)]
pub struct ApiToken {
    /// Who it is, in the audit.
    pub name: String,
    /// The secret.
    pub token: String,
    /// What it may do.
    pub role: Role,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Who is calling: a token's name and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (the actor of the audit).
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Who calls when no token is configured (loopback only): everything.
    pub fn local() -> Caller {
        Caller {
            name: "local".to_owned(),
            role: Role::Admin,
        }
    }
}

/// The token `presented` matches, compared in constant time against every
/// token (no early exit, so timing does not tell which one, or how much of
/// one, matched).
pub fn find<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let mut found = None;
    for t in tokens {
        if bool::from(t.token.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_what_design_md_says() {
        let table: Vec<(Role, [bool; 3])> = Role::ALL
            .iter()
            .map(|r| {
                (
                    *r,
                    [
                        r.allows(Need::Read),
                        r.allows(Need::Send),
                        r.allows(Need::Operate),
                    ],
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                (Role::Reader, [true, false, false]),
                (Role::Sender, [true, true, false]),
                (Role::Operator, [true, false, true]),
                (Role::Admin, [true, true, true]),
            ]
        );
    }

    #[test]
    fn a_token_is_found_by_its_secret() {
        let tokens = [
            ApiToken {
                name: "alice".into(),
                token: "a".repeat(20),
                role: Role::Operator,
            },
            ApiToken {
                name: "shop".into(),
                token: "b".repeat(20),
                role: Role::Sender,
            },
        ];
        assert_eq!(
            find(&tokens, &"b".repeat(20)).map(|t| t.name.as_str()),
            Some("shop")
        );
        assert!(find(&tokens, "b").is_none());
        assert!(
            !format!("{:?}", tokens[0]).contains("aaaa"),
            "the secret is not printed"
        );
    }
}

#[cfg(test)]
mod table_and_document {
    use super::*;

    /// The table of roles and the OpenAPI document name the same routes:
    /// a route added to one and not the other fails here.
    #[test]
    fn every_route_of_the_table_is_in_the_openapi_document_and_back() {
        let doc: serde_json::Value = serde_json::from_str(crate::OPENAPI).expect("openapi.json");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            if ["/metrics", "/healthz", "/readyz"].contains(&path.as_str()) {
                continue;
            }
            for method in ops.as_object().expect("operations").keys() {
                if ["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                    documented.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let mut table: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }
}
