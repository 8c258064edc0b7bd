use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
database = "sqlite://x.db"
api_tokens = ["${TOKEN}"]

[destinations.crm]
url = "https://crm.example.com"
policy = "billing"
headers = { Authorization = "Bearer ${CRM_TOKEN}" }
max_in_flight = 8
rate_limit = "50/s"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[policies.billing]
extends = "standard"
max_attempts = 6

[alerts]
webhook = "https://ops.example.com/hooks/redrive"
"#;

#[test]
fn design_md_configuration_loads_with_variables_expanded() {
    let c = Config::from_toml(
        "redrive.toml",
        GOOD,
        &env(&[
            ("TOKEN", "0123456789abcdef0123"),
            ("CRM_TOKEN", "crm-secret"),
        ]),
    )
    .unwrap();
    assert_eq!(c.api_tokens.len(), 1);
    assert_eq!(
        (
            c.api_tokens[0].name.as_str(),
            c.api_tokens[0].token.as_str(),
            c.api_tokens[0].role
        ),
        ("admin", "0123456789abcdef0123", Role::Admin)
    );
    let crm = &c.destinations[0];
    assert_eq!(
        (
            crm.name.as_str(),
            crm.policy.name.as_str(),
            crm.policy.max_attempts
        ),
        ("crm", "billing", 6)
    );
    assert_eq!(crm.headers[0].1, "Bearer crm-secret");
    assert_eq!(crm.rate_limit.map(|r| r.per_second), Some(50.0));
    assert!(crm.signing.is_some());
    assert!(c.alert_webhook.is_some());
}

#[test]
fn environment_overrides_win() {
    let e = env(&[
        ("TOKEN", "0123456789abcdef0123"),
        ("CRM_TOKEN", "x"),
        ("REDRIVE__SERVER__LISTEN", "127.0.0.1:9999"),
        ("REDRIVE__DESTINATIONS__CRM__MAX_IN_FLIGHT", "3"),
    ]);
    let c = Config::from_toml("redrive.toml", GOOD, &e).unwrap();
    assert_eq!(c.listen.port(), 9999);
    assert_eq!(c.destinations[0].max_in_flight, 3);
}

#[test]
fn no_file_gives_the_defaults() {
    let c = Config::from_toml("(defaults)", "", &HashMap::new()).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.database, DEFAULT_DATABASE);
    assert!(c.destinations.is_empty() && c.api_tokens.is_empty());
}

#[test]
fn the_lease_margin_is_30s_unless_set_and_at_least_1s() {
    let c = Config::from_toml("(defaults)", "", &HashMap::new()).unwrap();
    assert_eq!(c.lease_margin, Duration::from_secs(30));
    let c = Config::from_toml(
        "r.toml",
        "[server]\nlease_margin = \"5s\"\n",
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(c.lease_margin, Duration::from_secs(5));
    let e = Config::from_toml(
        "r.toml",
        "[server]\nlease_margin = \"500ms\"\n",
        &HashMap::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("server.lease_margin: must be at least 1s"),
        "{e}"
    );
}

#[test]
fn errors_name_the_key() {
    let e = |text: &str, vars: &[(&str, &str)]| {
        Config::from_toml("r.toml", text, &env(vars))
            .unwrap_err()
            .to_string()
    };
    assert!(e("[server]\napi_tokens = [\"${NOPE}\"]\n", &[])
        .contains("server.api_tokens[0]: the environment variable `NOPE` is not set"));
    assert!(e("[server]\nlisten = \"nowhere\"\n", &[])
        .contains("server.listen: `nowhere` is not an address"));
    assert!(
        e("[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n", &[]).contains("unknown field `port`")
    );
    assert!(e("[destinations.crm]\nurl = \"ftp://x\"\n", &[]).contains("destinations.crm.url"));
    assert!(e(
        "[destinations.crm]\nurl = \"http://x\"\npolicy = \"nope\"\n",
        &[]
    )
    .contains("destinations.crm.policy: `nope` is neither"));
    assert!(e(
        "[destinations.crm]\nurl = \"http://x\"\nrate_limit = \"fast\"\n",
        &[]
    )
    .contains("destinations.crm.rate_limit"));
    assert!(e(
        "[destinations.crm]\nurl = \"http://x\"\nsigning_secret = \"abc\"\n",
        &[]
    )
    .contains("destinations.crm.signing_secret: a signing secret starts with `whsec_`"));
    assert!(e("[server]\napi_tokens = [\"short\"]\n", &[]).contains("shorter than 16"));
    let named = |t: &str| format!("[server]\napi_tokens = [{t}]\n");
    assert!(e(
        &named(r#"{ name = "a", token = "0123456789abcdef01", role = "boss" }"#),
        &[]
    )
    .contains("server.api_tokens[0].role: `boss` is not a role"));
    assert!(e(&named(r#"{ name = "a", token = "0123456789abcdef01", role = "reader" }, { name = "a", token = "0123456789abcdef02", role = "admin" }"#), &[])
        .contains("server.api_tokens[1].name: `a` names two tokens"));
    assert!(e(
        &named(
            r#"{ name = "a", token = "0123456789abcdef01", role = "reader" }, "0123456789abcdef01""#
        ),
        &[]
    )
    .contains("server.api_tokens[1]: is the same secret as another token"));
    assert!(e(
        &named(r#"{ name = "a", token = "0123456789abcdef01" }"#),
        &[]
    )
    .contains("server.api_tokens[0]: missing field `role`"));
    assert!(e(
        &named(r#"{ name = "a", token = "0123456789abcdef01", role = "reader", roles = 1 }"#),
        &[]
    )
    .contains("server.api_tokens[0].roles: unknown field"));
    assert!(e("[server]\ndatabase = \"mysql://x\"\n", &[]).contains("server.database"));
    assert!(e("[policies.billing]\nschedule = []\n", &[])
        .contains("policies.billing.schedule: the schedule is empty"));
}

#[test]
fn auth_and_reconcile_errors_name_the_key() {
    let e = |table: &str| {
        Config::from_toml(
            "r.toml",
            &format!("[destinations.privo]\nurl = \"http://x\"\n{table}"),
            &HashMap::new(),
        )
        .unwrap_err()
        .to_string()
    };
    let oauth = |extra: &str| {
        format!("auth = {{ oauth2 = {{ token_url = \"http://t/token\", client_id = \"p\"{extra} }} }}\n")
    };
    assert!(e(&oauth("")).contains("destinations.privo.auth.oauth2: missing field `client_secret`"));
    assert!(e(&oauth(", client_secret = \"s\", scopes = \"x\""))
        .contains("destinations.privo.auth.oauth2.scopes: unknown field `scopes`"));
    assert!(e(&oauth(", client_secret = \"s\", client_auth = \"post\""))
        .contains("destinations.privo.auth.oauth2.client_auth: `post` is neither"));
    assert!(
        e("auth = { oauth = {} }\n").contains("destinations.privo.auth: unknown variant `oauth`")
    );
    assert!(e("auth = { bearer = \"\" }\n").contains("destinations.privo.auth.bearer: is empty"));
    assert!(
        e("headers = { Authorization = \"x\" }\nauth = { bearer = \"t\" }\n")
            .contains("destinations.privo.auth: `headers` already sets Authorization")
    );
    let reconcile = |body: &str| e(&format!("[destinations.privo.reconcile]\n{body}"));
    assert!(reconcile("path = \"/u?e={nope}\"\n")
        .contains("destinations.privo.reconcile.path: `{nope}` names nothing in a message"));
    assert!(reconcile("path = \"/u\"\napplied = [\"2xx\", 99]\n")
        .contains("destinations.privo.reconcile.applied[1]: `99` is not a status"));
    assert!(reconcile("path = \"/u\"\nnot_applied = [\"2xx\"]\n")
        .contains("destinations.privo.reconcile.not_applied: overlaps `applied`"));
    assert!(reconcile("method = \"GET\"\n").contains("missing field `path`"));
    let ok = Config::from_toml(
        "r.toml",
        "[destinations.privo]\nurl = \"http://x\"\nauth = { basic = { user = \"u\", password = \"p\" } }\n[destinations.privo.reconcile]\npath = \"/u/{id}\"\n",
        &HashMap::new(),
    )
    .unwrap();
    let d = &ok.destinations[0];
    assert_eq!(d.headers[0].1, "Basic dTpw");
    assert!(d.secrets().contains(&"Basic dTpw".to_owned()));
    let probe = d.reconcile.as_ref().unwrap();
    assert_eq!((probe.method.as_str(), probe.after.as_secs()), ("GET", 5));
}
