//! `custos serve` through the real binary: config errors, serving a project, SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::Project;

#[test]
fn serve_refuses_plain_http_off_loopback_and_literal_secrets() {
    let p = Project::new();
    p.write(
        "server.toml",
        "[server]\nlisten = \"0.0.0.0:18080\"\n[danger]\nplaintext = true\n",
    );
    let (code, _, err) = p.run_as("tester", &["serve", "--config", "server.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("loopback"), "{err}");
    p.write(
        "server.toml",
        "[server]\nlisten = \"127.0.0.1:18080\"\n[danger]\nplaintext = true\n[keystore]\npassphrase = \"CANARYPASS\"\n",
    );
    let (code, _, err) = p.run_as("tester", &["serve", "--config", "server.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("keystore.passphrase") && !err.contains("CANARYPASS"),
        "{err}"
    );
}

/// One plain HTTP/1.1 request to the loopback server.
fn get(addr: &str, path: &str, token: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_the_project_and_stops_on_sigterm() {
    let p = Project::new();
    p.write(
        "server.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[danger]\nplaintext = true\n[keystore]\npassphrase = \"${env:PASS_FOR_SERVER}\"\n[pipelines]\nroots = [\"data\"]\n",
    );
    p.write(
        "data/in/orders.csv",
        "order_id,sku,qty\n1,0042,3\n2,0007,1\n",
    );
    p.write(
        "orders.toml",
        "[pipeline]\nname = \"orders\"\n[sources.o]\ntype = \"csv\"\npath = \"in/orders.csv\"\n[sinks.out]\ntype = \"jsonl\"\ninputs = [\"o\"]\npath = \"out/orders.jsonl\"\n",
    );
    // The keystore the server unlocks (created by the CLI in local mode first).
    let out = p.run(&["keys", "init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("custos"))
        .current_dir(p.path())
        .args(["serve", "--config", "server.toml"])
        .env("PASS_FOR_SERVER", "test-passphrase-not-secret")
        .env_remove("CUSTOS_KEYSTORE_PASSPHRASE")
        .env_remove("CUSTOS_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if v["fields"]["message"] == "custos server listening" {
            addr = v["fields"]["addr"].as_str().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("the server said where it listens");
    // While it serves, local-mode commands are refused: the server owns the project.
    let (code, _, err) = p.run_as("tester", &["runs", "list"]);
    assert_ne!(code, 0);
    assert!(err.contains("served by a custos server"), "{err}");
    let r = get(&addr, "/healthz", None);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // SIGHUP reloads TLS settings (none here) and never stops the server.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut reloaded = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("SIGHUP") {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the server logs the reload");
    let r = get(&addr, "/healthz", None);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let token = p.read(".custos/tester.token");
    let token = token.trim().to_string();
    let r = get(&addr, "/v1/whoami", Some(&token));
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"tester\""),
        "{r}"
    );
    let r = get(&addr, "/v1/whoami", None);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");

    // The CLI as a client: same commands, same output and exit codes.
    let server = format!("http://{addr}");
    // A command as `user` against the server, with a one-time code when given.
    let remote_otp = |user: &str, otp: Option<&str>, args: &[&str]| {
        let mut cmd = p.custos_as(user);
        cmd.env("CUSTOS_SERVER", &server)
            .env("XDG_CONFIG_HOME", p.path().join("home"));
        if let Some(c) = otp {
            cmd.env("CUSTOS_OTP", c);
        }
        let out = cmd.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let remote = |user: &str, args: &[&str]| remote_otp(user, None, args);
    let (code, o, e) = remote(
        "tester",
        &[
            "pipelines",
            "register",
            "orders.toml",
            "--classification",
            "internal",
        ],
    );
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("registered \"orders\" version 1"), "{o}");
    let (code, o, e) = remote("tester", &["run", "orders", "--json"]);
    assert_eq!(code, 0, "{o}{e}");
    let summary: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(summary["rows_written"], 2);
    assert_eq!(
        p.read("data/out/orders.jsonl").lines().next().unwrap(),
        r#"{"order_id":1,"sku":"0042","qty":3}"#
    );
    let (code, o, _) = remote("tester", &["runs", "list"]);
    assert_eq!(code, 0);
    assert!(o.contains("orders") && o.contains("succeeded"), "{o}");
    let (code, _, e) = remote("tester", &["run", "nope"]);
    assert_eq!(code, 2, "{e}");
    let (code, _, e) = remote("tester", &["audit", "verify"]);
    assert_eq!(code, 3, "{e}");
    let (code, o, e) = remote("admin", &["audit", "verify"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.starts_with("audit log ok:"), "{o}");
    // Export a checkpoint through the server, then prove the log only grew since.
    let cp = p.path().join("server-cp.json");
    let (code, o, e) = remote(
        "admin",
        &["audit", "export-checkpoint", "--out", cp.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) = remote("admin", &["audit", "prove", cp.to_str().unwrap()]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.starts_with("consistent:"), "{o}");
    let (code, o, e) = remote("admin", &["audit", "tail", "-n", "3", "--json"]);
    assert_eq!(code, 0, "{o}{e}");
    let tail: Vec<serde_json::Value> = o
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tail.len(), 3, "{o}");
    assert!(
        tail[2]["seq"].as_u64().unwrap() > 0 && tail[2]["event"]["action"].is_string(),
        "{o}"
    );
    let (code, o, e) = remote(
        "admin",
        &[
            "audit",
            "tail",
            "-n",
            "50",
            "--json",
            "--principal",
            "tester",
            "--outcome",
            "allowed",
        ],
    );
    assert_eq!(code, 0, "{o}{e}");
    assert!(
        !o.is_empty()
            && o.lines().all(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"]["principal"] == "tester" && v["event"]["outcome"] == "allowed"
            }),
        "{o}"
    );
    // Scans: a registered pipeline by name, a file under the data roots by path; a pipeline
    // file of the caller's is not the server's to read.
    let (code, o, e) = remote("tester", &["scan", "orders"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("source \"o\": 2 rows read"), "{o}");
    let (code, o, e) = remote("tester", &["scan", "in/orders.csv", "--json"]);
    assert_eq!(code, 0, "{o}{e}");
    let scans: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(scans[0]["rows"], 2, "{o}");
    let (code, _, e) = remote("tester", &["scan", "orders.toml"]);
    assert_eq!(code, 2, "{e}");
    // Privileged commands need a second factor: enrol, confirm, then send CUSTOS_OTP.
    let (code, _, e) = remote("admin", &["users", "list"]);
    assert_eq!(code, 3, "{e}");
    assert!(e.contains("second factor"), "{e}");
    let (code, o, e) = remote("admin", &["mfa", "enroll"]);
    assert_eq!(code, 0, "{e}");
    let secret = o
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret is shown once")
        .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code_at = |t: u64| custos_policy::mfa::totp_code(&secret, 6, t).unwrap();
    let (code, o, e) = remote("admin", &["mfa", "confirm", &code_at(now)]);
    assert_eq!(code, 0, "{o}{e}");
    let with_otp = |otp: &str, args: &[&str]| remote_otp("admin", Some(otp), args);
    let next = code_at(now + 30);
    let (code, o, e) = with_otp(&next, &["users", "list"]);
    assert_eq!(code, 0, "{e}");
    assert!(o.contains("tester") && o.contains("security_admin"), "{o}");
    // The same code twice: refused.
    let (code, _, e) = with_otp(&next, &["users", "list"]);
    assert_eq!(code, 3, "{e}");
    assert!(e.contains("already used"), "{e}");
    // Keys are the server's: listed through it, never initialised by a client.
    let (code, o, e) = remote("tester", &["keys", "list"]);
    assert_eq!(code, 0, "{e}");
    assert!(o.contains("custos-audit") && !o.contains("wrapped"), "{o}");
    let (code, _, e) = remote("tester", &["keys", "init"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("not available through a server"), "{e}");
    // `custos login` keeps the token for that server (mode 0600).
    let out = p
        .custos()
        .env("CUSTOS_SERVER", &server)
        .env("XDG_CONFIG_HOME", p.path().join("home"))
        .env_remove("CUSTOS_TOKEN_FILE")
        .args(["login", "--token-stdin"])
        .write_stdin(token.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds = p.path().join("home/custos/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = p
        .custos()
        .env("CUSTOS_SERVER", &server)
        .env("XDG_CONFIG_HOME", p.path().join("home"))
        .env_remove("CUSTOS_TOKEN_FILE")
        .args(["pipelines", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("orders"));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}: {rest:?}");
    let logs = rest.join("\n");
    assert!(logs.contains("\"request_id\""), "{logs}");
    assert!(
        !logs.contains(&token) && !logs.contains("test-passphrase"),
        "{logs}"
    );
    // The project is the CLI's again, and the log verifies with the server's checkpoints.
    let (code, out, err) = p.run_as("admin", &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = p.run_as("admin", &["audit", "tail", "-n", "10", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("server_stop"), "{out}");
}
