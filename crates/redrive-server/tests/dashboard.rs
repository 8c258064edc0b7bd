//! The dashboard in a real headless browser (Debian's chromium driven through
//! chromedriver over WebDriver): sign in, find a parked message produced by
//! `redrive mock`, read its attempts, redrive it and see it delivered, redrive
//! a filter in bulk; a signed-out request and a forged POST are refused. The
//! run saves screenshots under `docs/screenshots/`.
//!
//! Needs `chromedriver` and `chromium` (`apt-get install chromium
//! chromium-driver`): skipped without them, a failure under `CI=true`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use fantoccini::{ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redrive_mock::{MockServer, Scenario};
use redrive_server::{serve, Config};
use redrive_store::SqliteStore;
use serde_json::Value;
use tokio::sync::oneshot;

const TOKEN: &str = "dashboard-token-0123456789";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn browser(profile_dir: &Path) -> Option<(fantoccini::Client, Driver)> {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let (Some(driver), Some(chromium)) = (driver, chromium) else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED the dashboard browser test: install chromium and chromium-driver");
        return None;
    };
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let guard = Driver(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1366,900",
                format!("--user-data-dir={}", profile_dir.display()),
            ]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
    Some((client, guard))
}

struct Api {
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, http::HeaderMap, String) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = client
            .request(
                req.body(Full::new(Bytes::from(body.to_owned())))
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = res.status().as_u16();
        let h = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        (status, h, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn json(&self, method: &str, path: &str, body: &str) -> Value {
        let auth = format!("Bearer {TOKEN}");
        let (status, _, text) = self
            .call(method, path, &[("authorization", &auth)], body)
            .await;
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).expect("json")
    }

    async fn enqueue(&self, path: &str) -> String {
        let v = self
            .json("POST", "/v1/messages", &format!(r#"{{"destination":"crm","path":"{path}","body":{{"email":"ada@example.com","password":"hunter2"}}}}"#))
            .await;
        v["id"].as_str().expect("id").to_owned()
    }

    async fn wait_state(&self, id: &str, state: &str) {
        for _ in 0..500 {
            if self.json("GET", &format!("/v1/messages/{id}"), "").await["state"] == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{id} never became {state}: {}",
            self.json("GET", &format!("/v1/messages/{id}"), "").await
        );
    }
}

/// Waits for an element of the page a click led to (a click returns before
/// the next page has loaded).
async fn arrive(browser: &fantoccini::Client, css: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"));
    browser.source().await.expect("source")
}

type Serving = tokio::task::JoinHandle<Result<(), redrive_server::ServeError>>;

/// Serves the configuration `text`: its base URL, the stop, the task.
async fn start(text: &str) -> (String, oneshot::Sender<()>, Serving) {
    let config =
        Config::from_toml("test.toml", text, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::open_url(&config.database).expect("store");
    let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        config,
        store,
        async move {
            let _ = stop_rx.await;
        },
        move |a| {
            let _ = addr_tx.send(a);
        },
    ));
    (
        format!("http://{}", addr_rx.await.expect("listening")),
        stop,
        server,
    )
}

/// Types `token` into the sign-in form and sends it.
async fn submit_token(browser: &fantoccini::Client, token: &str) {
    browser
        .find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type");
    browser
        .find(Locator::Css("form button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
}

/// Signs in with `token` on the sign-in page.
async fn sign_in(browser: &fantoccini::Client, base: &str, token: &str) {
    browser.goto(&format!("{base}/login")).await.expect("goto");
    submit_token(browser, token).await;
    arrive(browser, "#who").await;
}

async fn click(browser: &fantoccini::Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .click()
        .await
        .expect("click");
}

async fn replace_text(browser: &fantoccini::Client, id: &str, text: &str) {
    let field = browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_finds_reads_and_redrives_parked_messages() {
    let profile = tempfile::tempdir().expect("profile dir");
    let Some((browser, _driver)) = browser(profile.path()).await else {
        return;
    };
    let failing = "[[routes]]\npath = \"/ok/*\"\nsteps = [{ status = 200 }]\n\
                   [default]\nstatus = 422\nheaders = { content-type = \"application/json\" }\nbody = '{\"error\":\"email already registered\",\"field\":\"email\"}'\n";
    let mock = MockServer::start(
        Scenario::from_toml("s", failing, None).expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\napi_tokens = [\"{TOKEN}\"]\n\
         [destinations.crm]\nurl = \"{}\"\npolicy = \"standard\"\nheaders = {{ Authorization = \"Bearer crm-secret-token\" }}\n\
         [destinations.billing]\nurl = \"{}\"\npolicy = \"intentplatform\"\n",
        dir.path().join("redrive.db").display(),
        mock.url(),
        mock.url()
    );
    let (base, stop, server) = start(&text).await;
    let api = Api { base: base.clone() };

    // Some history for the overview, and one parked message to find.
    for i in 0..4 {
        let id = api.enqueue(&format!("/ok/{i}")).await;
        api.wait_state(&id, "delivered").await;
    }
    let parked = api.enqueue("/v1/users").await;
    api.wait_state(&parked, "parked").await;

    // Signed out: nothing but the sign-in.
    browser.goto(&format!("{base}/parked")).await.expect("goto");
    arrive(&browser, "#token").await;
    assert!(browser
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/login"));
    assert!(!browser.source().await.expect("source").contains(&parked));
    let (status, headers, body) = api.call("GET", "/parked", &[], "").await;
    assert_eq!(
        (
            status,
            headers.get("location").map(|v| v.to_str().unwrap_or(""))
        ),
        (303, Some("/login"))
    );
    assert!(!body.contains(&parked));

    // A wrong token is refused, the right one signs in.
    submit_token(&browser, "wrong-token-000000000").await;
    assert!(arrive(&browser, ".error").await.contains("not valid"));
    submit_token(&browser, TOKEN).await;
    let overview = arrive(&browser, "svg.chart").await;
    assert_eq!(browser.current_url().await.expect("url").path(), "/");
    assert!(
        overview.contains("Attempts per minute") && overview.contains("crm"),
        "overview"
    );
    std::fs::create_dir_all(screenshots_dir()).expect("docs/screenshots");
    std::fs::write(
        screenshots_dir().join("overview.png"),
        browser.screenshot().await.expect("png"),
    )
    .expect("write");

    // The inbox lists the parked message; its page tells the story.
    browser.goto(&format!("{base}/parked")).await.expect("goto");
    let inbox = arrive(&browser, "table").await;
    assert!(
        inbox.contains(&parked) && inbox.contains("not_retryable") && inbox.contains("content")
    );
    std::fs::write(
        screenshots_dir().join("inbox.png"),
        browser.screenshot().await.expect("png"),
    )
    .expect("write");
    browser
        .find(Locator::LinkText(&parked))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    let page = arrive(&browser, "ol.attempts").await;
    assert!(
        page.contains("HTTP 422") && page.contains("email already registered"),
        "attempts are shown"
    );
    assert!(
        !page.contains("hunter2") && !page.contains("crm-secret-token"),
        "secrets are redacted"
    );
    std::fs::write(
        screenshots_dir().join("message.png"),
        browser.screenshot().await.expect("png"),
    )
    .expect("write");

    // The receiver is fixed; redrive from the page and see it delivered.
    mock.replace_scenario(
        Scenario::from_toml("fixed", "[default]\nstatus = 201\n", None).expect("scenario"),
    );
    browser
        .find(Locator::Id("redrive"))
        .await
        .expect("redrive button")
        .click()
        .await
        .expect("click");
    api.wait_state(&parked, "delivered").await;
    browser
        .goto(&format!("{base}/messages/{parked}"))
        .await
        .expect("goto");
    let page = arrive(&browser, ".state-delivered").await;
    assert!(
        page.contains("state-delivered") && page.contains("HTTP 201"),
        "delivered after the redrive"
    );

    // Bulk: three more park, then the whole filter is redriven.
    mock.replace_scenario(Scenario::from_toml("failing", failing, None).expect("scenario"));
    let mut more = Vec::new();
    for i in 0..3 {
        more.push(api.enqueue(&format!("/v1/users/{i}")).await);
    }
    for id in &more {
        api.wait_state(id, "parked").await;
    }
    mock.replace_scenario(
        Scenario::from_toml("fixed", "[default]\nstatus = 201\n", None).expect("scenario"),
    );
    browser
        .goto(&format!(
            "{base}/parked?destination=crm&reason=not_retryable"
        ))
        .await
        .expect("goto");
    arrive(&browser, "#redrive-all").await;
    browser
        .find(Locator::Id("redrive-all"))
        .await
        .expect("bulk button")
        .click()
        .await
        .expect("click");
    assert!(arrive(&browser, ".flash")
        .await
        .contains("3 parked message(s) redriven"));
    for id in &more {
        api.wait_state(id, "delivered").await;
    }

    // The destinations and their schedules.
    browser
        .goto(&format!("{base}/destinations"))
        .await
        .expect("goto");
    let page = arrive(&browser, "svg.timeline").await;
    assert!(
        page.contains("intentplatform") && page.contains("+1d"),
        "the seed 004 timeline is drawn"
    );
    // A page at a time, by name: after `billing` comes `crm` alone.
    browser
        .goto(&format!("{base}/destinations?after=billing"))
        .await
        .expect("goto");
    let page = arrive(&browser, "svg.timeline").await;
    assert!(
        page.contains("<h2>crm</h2>") && !page.contains("<h2>billing</h2>"),
        "the page after billing"
    );
    assert!(page.contains("2 configured") && !page.contains("Next page"));

    // A forged POST (the session cookie, no CSRF token) is refused.
    let cookie = browser
        .get_named_cookie("redrive_session")
        .await
        .expect("session cookie");
    let cookie_header = format!("redrive_session={}", cookie.value());
    mock.replace_scenario(Scenario::from_toml("failing", failing, None).expect("scenario"));
    let target = api.enqueue("/v1/users/forged").await;
    api.wait_state(&target, "parked").await;
    let form = format!("action=redrive&ids={target}");
    let (status, _, _) = api
        .call(
            "POST",
            "/parked/act",
            &[
                ("cookie", &cookie_header),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = api
        .call(
            "POST",
            "/parked/act",
            &[
                ("cookie", &cookie_header),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!("{form}&csrf=guess"),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = api
        .call(
            "POST",
            "/parked/act",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    assert_eq!(status, 303, "signed out: sent to the sign-in");
    assert_eq!(
        api.json("GET", &format!("/v1/messages/{target}"), "").await["state"],
        "parked",
        "nothing changed"
    );

    browser.close().await.expect("close");
    let _ = stop.send(());
    server.await.expect("join").expect("served");
}

/// An operator corrects a parked message in the browser: a body that is not
/// JSON is refused next to its field, the fix is saved as revision 2 (with a
/// diff), the redrive delivers it, and the audit page names the operator. A
/// reader is offered none of the buttons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_edits_fixes_and_redrives_and_the_audit_says_so() {
    let profile = tempfile::tempdir().expect("profile dir");
    let Some((browser, _driver)) = browser(profile.path()).await else {
        return;
    };
    // The receiver refuses a misspelt domain.
    let receiver =
        "[[routes]]\npath = \"/v1/users\"\nsteps = [{ status = 422 }]\n[default]\nstatus = 201\n";
    let mock = MockServer::start(
        Scenario::from_toml("s", receiver, None).expect("scenario"),
        "127.0.0.1:0".parse().expect("addr"),
        None,
    )
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\n\
         api_tokens = [\"{TOKEN}\", {{ name = \"olivia\", token = \"operator-token-0123456789\", role = \"operator\" }}, \
         {{ name = \"rita\", token = \"reader-token-0123456789\", role = \"reader\" }}]\n\
         [destinations.crm]\nurl = \"{}\"\npolicy = \"standard\"\n",
        dir.path().join("redrive.db").display(),
        mock.url()
    );
    let (base, stop, server) = start(&text).await;
    let api = Api { base: base.clone() };
    let parked = api.enqueue("/v1/users").await;
    api.wait_state(&parked, "parked").await;

    // A reader sees the message but no button.
    sign_in(&browser, &base, "reader-token-0123456789").await;
    browser
        .goto(&format!("{base}/messages/{parked}"))
        .await
        .expect("goto");
    let page = arrive(&browser, "#no-actions").await;
    assert!(
        page.contains("rita")
            && !page.contains("id=\"edit-save\"")
            && !page.contains("id=\"redrive\"")
    );
    browser.delete_all_cookies().await.expect("sign out");

    sign_in(&browser, &base, "operator-token-0123456789").await;
    browser
        .goto(&format!("{base}/messages/{parked}"))
        .await
        .expect("goto");
    arrive(&browser, "#edit").await;
    replace_text(&browser, "edit-path", "/v1/members").await;
    replace_text(&browser, "edit-body", "{\"email\": \"ada@example.com\",").await;
    replace_text(&browser, "edit-note", "the route moved").await;
    click(&browser, "edit-save").await;
    let page = arrive(&browser, "#error-body").await;
    assert!(
        page.contains("the body is not JSON"),
        "the error is next to the body"
    );
    std::fs::create_dir_all(screenshots_dir()).expect("docs/screenshots");
    browser
        .execute(
            "document.getElementById('error-body').scrollIntoView({block: 'center'})",
            vec![],
        )
        .await
        .expect("scroll to the error");
    std::fs::write(
        screenshots_dir().join("edit-error.png"),
        browser.screenshot().await.expect("png"),
    )
    .expect("save screenshot");
    // The form kept what was typed; fix the body only.
    let path_field = browser.find(Locator::Id("edit-path")).await.expect("path");
    assert_eq!(
        path_field.prop("value").await.expect("value").as_deref(),
        Some("/v1/members")
    );
    replace_text(&browser, "edit-body", "{\"email\": \"ada@example.com\"}").await;
    click(&browser, "edit-save").await;
    let page = arrive(&browser, "#revisions").await;
    assert!(
        page.contains("revision 2") && page.contains("olivia") && page.contains("the route moved")
    );
    assert!(page.contains("/v1/members"), "the diff shows the new path");
    let revisions = browser
        .find(Locator::Id("revisions"))
        .await
        .expect("revisions");
    std::fs::write(
        screenshots_dir().join("revisions.png"),
        revisions.screenshot().await.expect("png"),
    )
    .expect("save screenshot");
    click(&browser, "redrive").await;
    api.wait_state(&parked, "delivered").await;
    let journal = mock.journal(None);
    let last = journal.entries.last().expect("the receiver saw it");
    assert_eq!(last.path, "/v1/members");

    browser.goto(&format!("{base}/audit")).await.expect("goto");
    let page = arrive(&browser, "#audit").await;
    let rows: Vec<&str> = page.split("<tr>").skip(2).collect();
    assert!(rows.len() >= 2, "{page}");
    assert!(
        rows[0].contains("olivia") && rows[0].contains("redrive"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains("olivia") && rows[1].contains("edit"),
        "{}",
        rows[1]
    );
    std::fs::write(
        screenshots_dir().join("audit.png"),
        browser.screenshot().await.expect("png"),
    )
    .expect("save screenshot");

    // Pause and resume from the destinations page.
    browser
        .goto(&format!("{base}/destinations"))
        .await
        .expect("goto");
    arrive(&browser, "#pause-crm").await;
    replace_text(&browser, "pause-note-crm", "maintenance").await;
    click(&browser, "pause-crm").await;
    let page = arrive(&browser, "#paused-crm").await;
    assert!(page.contains("paused by <b>olivia</b>") && page.contains("maintenance"));
    click(&browser, "resume-crm").await;
    arrive(&browser, "#pause-crm").await;

    browser.close().await.expect("close");
    let _ = stop.send(());
    server.await.expect("join").expect("served");
}
