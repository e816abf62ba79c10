//! Server mode: with `CUSTOS_SERVER=https://host:8443` set, commands go to a `custos serve`,
//! which alone holds the project's keys, users, policies and audit log. The output and exit
//! codes are those of local mode. The token is `CUSTOS_TOKEN`, the file named by
//! `CUSTOS_TOKEN_FILE`, or the one `custos login` saved for that server; the server's CA is
//! the PEM file named by `CUSTOS_SERVER_CA` (else the system roots).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use custos_engine::{RunRecord, RunSummary};
use custos_server::client::{Client, ClientError};
use serde_json::{Value, json};

use crate::{EXIT_DENIED, EXIT_INVALID, EXIT_RUN_FAILED, RunArgs, RunsCommand, output};

/// `custos pipelines ...` (server mode).
#[derive(Debug, Subcommand)]
pub(crate) enum PipelinesCommand {
    /// Register a pipeline file with the server (a new version if the name exists).
    Register {
        /// The pipeline file; its `[pipeline] name` is the registered name.
        file: PathBuf,
        /// A tag the policies see (repeat for more) [default: the file's `[pipeline] tags`].
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// public, internal, confidential or restricted.
        #[arg(long, default_value = "confidential")]
        classification: String,
        /// Directory on the server that relative paths resolve against [default: its first
        /// data root].
        #[arg(long, value_name = "DIR")]
        base_dir: Option<PathBuf>,
    },
    /// List registered pipelines.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one registered pipeline and its config.
    Show {
        /// Pipeline name.
        name: String,
    },
}

/// `custos jobs ...` (server mode).
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List the server's run jobs, newest first.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Show {
        /// Job id.
        id: String,
    },
    /// Cancel a job: a queued one never starts, a running one is rolled back.
    Cancel {
        /// Job id.
        id: String,
    },
}

/// The server named by `CUSTOS_SERVER`, if any.
pub(crate) fn server() -> Option<String> {
    std::env::var("CUSTOS_SERVER")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where `custos login` keeps tokens: `$XDG_CONFIG_HOME/custos/credentials.json` (or
/// `~/.config/...`), mode 0600.
fn credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("custos").join("credentials.json"))
}

fn saved_token(server: &str) -> Option<String> {
    let text = std::fs::read_to_string(credentials_path()?).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v[server].as_str().map(str::to_string)
}

fn token(server: &str) -> Result<Option<String>> {
    Ok(crate::access::token_from_env()?.or_else(|| saved_token(server)))
}

fn client(server: &str, token: &str) -> Result<Client, ClientError> {
    let ca = match std::env::var_os("CUSTOS_SERVER_CA").filter(|v| !v.is_empty()) {
        Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| {
            ClientError::Config(format!(
                "CUSTOS_SERVER_CA {}: {e}",
                PathBuf::from(&p).display()
            ))
        })?),
        None => None,
    };
    Client::new(server, ca.as_deref(), token)
}

/// Prints a client error the way local mode prints its errors; returns the exit code.
fn fail(e: &ClientError) -> u8 {
    match e {
        ClientError::Api {
            status: 401 | 403, ..
        } => eprintln!("custos: {e}"),
        _ => eprintln!("custos: error: {e}"),
    }
    e.exit_code()
}

/// Runs one command against the server; `None` when the command has no server form.
pub(crate) fn dispatch(server: &str, command: &crate::Command) -> Result<Option<u8>> {
    use crate::Command;
    let needs_token = !matches!(command, Command::Login { .. });
    let tok = token(server)?;
    if needs_token && tok.is_none() {
        eprintln!(
            "custos: not signed in: set CUSTOS_TOKEN (or CUSTOS_TOKEN_FILE), or run `custos login`"
        );
        return Ok(Some(EXIT_DENIED));
    }
    let rt = crate::runtime()?;
    let tok = tok.unwrap_or_default();
    let c = match client(server, &tok) {
        Ok(c) => c,
        Err(e) => return Ok(Some(fail(&e))),
    };
    let code = match command {
        Command::Login { token_stdin } => rt.block_on(login(server, *token_stdin))?,
        Command::Run(args) => rt.block_on(run(&c, args))?,
        Command::Runs { command } => rt.block_on(runs(&c, command))?,
        Command::Pipelines { command } => rt.block_on(pipelines(&c, command))?,
        Command::Jobs { command } => rt.block_on(jobs(&c, command))?,
        Command::Audit { command } => return rt.block_on(audit(&c, command)),
        _ => return Ok(None),
    };
    Ok(Some(code))
}

async fn login(server: &str, from_stdin: bool) -> Result<u8> {
    let token = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the token from standard input")?;
        line.trim().to_string()
    } else {
        match token(server)? {
            Some(t) => t,
            None => {
                eprintln!(
                    "custos: error: give the token on standard input (--token-stdin) or in CUSTOS_TOKEN_FILE"
                );
                return Ok(EXIT_INVALID);
            }
        }
    };
    let c = match client(server, &token) {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e)),
    };
    let me = match c.call("GET", "/v1/whoami", None).await {
        Ok(v) => v,
        Err(e) => return Ok(fail(&e)),
    };
    let Some(path) = credentials_path() else {
        anyhow::bail!("no home directory to keep the credentials in (set XDG_CONFIG_HOME)");
    };
    let mut all: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    all[server] = json!(token);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(&all)?.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "signed in to {server} as \"{}\" (role {}); token kept in {} (mode 0600)",
        me["user"]["name"].as_str().unwrap_or("?"),
        me["user"]["role"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(0)
}

async fn run(c: &Client, args: &RunArgs) -> Result<u8> {
    // On a server, runs name a registered pipeline.
    let name = args.file.display().to_string();
    let path = format!("/v1/pipelines/{}/runs", encode(&name));
    let job = match c.call("POST", &path, None).await {
        Ok(j) => j,
        Err(e) => return Ok(fail(&e)),
    };
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let mut asked_cancel = false;
    let info = loop {
        if cancelled.load(std::sync::atomic::Ordering::Relaxed) && !asked_cancel {
            asked_cancel = true;
            if let Err(e) = c.call("POST", &format!("/v1/jobs/{id}/cancel"), None).await {
                eprintln!("custos: cancelling job {id}: {e}");
            }
        }
        let info = match c.call("GET", &format!("/v1/jobs/{id}"), None).await {
            Ok(i) => i,
            Err(e) => return Ok(fail(&e)),
        };
        let status = info["status"].as_str().unwrap_or_default();
        if let Some(pb) = &bar {
            pb.set_message(format!(
                "job {id} {status}: {} rows read, {} rows written",
                info["progress"]["rows_read"], info["progress"]["rows_written"]
            ));
        }
        if !matches!(status, "queued" | "running") {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let Some(summary) = info.get("summary").filter(|s| !s.is_null()) else {
        eprintln!(
            "custos: run of \"{name}\" {}: {}",
            info["status"].as_str().unwrap_or("failed"),
            info["error"].as_str().unwrap_or("unknown error")
        );
        return Ok(EXIT_RUN_FAILED);
    };
    let summary: RunSummary =
        serde_json::from_value(summary.clone()).context("reading the run summary")?;
    crate::report_summary(&summary, args)
}

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn runs(c: &Client, command: &RunsCommand) -> Result<u8> {
    match command {
        RunsCommand::List { limit, json } => {
            let v = match c
                .call("GET", &format!("/v1/runs?limit={limit}"), None)
                .await
            {
                Ok(v) => v,
                Err(e) => return Ok(fail(&e)),
            };
            let runs: Vec<RunRecord> = serde_json::from_value(v).context("reading run records")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                output::print_runs(&runs);
            }
            Ok(0)
        }
        RunsCommand::Show { id, json } => {
            let v = match c
                .call("GET", &format!("/v1/runs/{}", encode(id)), None)
                .await
            {
                Ok(v) => v,
                Err(e) => return Ok(fail(&e)),
            };
            let r: RunRecord = serde_json::from_value(v).context("reading the run record")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                output::print_run(&r);
            }
            Ok(0)
        }
    }
}

async fn pipelines(c: &Client, command: &PipelinesCommand) -> Result<u8> {
    match command {
        PipelinesCommand::Register {
            file,
            tags,
            classification,
            base_dir,
        } => {
            let config = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut body = json!({"config": config, "classification": classification});
            if !tags.is_empty() {
                body["tags"] = json!(tags);
            }
            if let Some(d) = base_dir {
                body["base_dir"] = json!(d);
            }
            match c.call("POST", "/v1/pipelines", Some(&body)).await {
                Ok(v) => {
                    println!(
                        "registered \"{}\" version {} (sha256 {}), tags {}, {}",
                        v["name"].as_str().unwrap_or("?"),
                        v["version"],
                        v["sha256"].as_str().unwrap_or("?"),
                        v["tags"],
                        v["classification"].as_str().unwrap_or("?")
                    );
                    Ok(0)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
        PipelinesCommand::List { json } => {
            let v = match c.call("GET", "/v1/pipelines", None).await {
                Ok(v) => v,
                Err(e) => return Ok(fail(&e)),
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            for p in v.as_array().into_iter().flatten() {
                println!(
                    "{:<24} v{:<4} {:<13} tags {:<24} by {}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"],
                    p["classification"].as_str().unwrap_or("?"),
                    p["tags"].to_string(),
                    p["registered_by"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
        PipelinesCommand::Show { name } => {
            match c
                .call("GET", &format!("/v1/pipelines/{}", encode(name)), None)
                .await
            {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(0)
                }
                Err(e) => Ok(fail(&e)),
            }
        }
    }
}

async fn jobs(c: &Client, command: &JobsCommand) -> Result<u8> {
    let r = match command {
        JobsCommand::List { json } => match c.call("GET", "/v1/jobs", None).await {
            Ok(v) if *json => {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            Ok(v) => {
                for j in v.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<20} {:<10} by {}",
                        j["id"].as_str().unwrap_or("?"),
                        j["pipeline"].as_str().unwrap_or("?"),
                        j["status"].as_str().unwrap_or("?"),
                        j["principal"].as_str().unwrap_or("?")
                    );
                }
                return Ok(0);
            }
            Err(e) => Err(e),
        },
        JobsCommand::Show { id } => {
            c.call("GET", &format!("/v1/jobs/{}", encode(id)), None)
                .await
        }
        JobsCommand::Cancel { id } => {
            c.call("POST", &format!("/v1/jobs/{}/cancel", encode(id)), None)
                .await
        }
    };
    match r {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Err(e) => Ok(fail(&e)),
    }
}

async fn audit(c: &Client, command: &crate::admin::AuditCommand) -> Result<Option<u8>> {
    use crate::admin::AuditCommand;
    match command {
        AuditCommand::Verify { public_key: None } => {
            match c.call("POST", "/v1/audit/verify", None).await {
                Ok(v) => {
                    println!(
                        "audit log ok: {} records, {} checkpoints, root {}",
                        v["records"],
                        v["checkpoints"],
                        v["root"].as_str().unwrap_or("?")
                    );
                    Ok(Some(0))
                }
                Err(e @ ClientError::Api { status: 500, .. }) => {
                    eprintln!("custos: audit log verification FAILED: {e}");
                    Ok(Some(EXIT_RUN_FAILED))
                }
                Err(e) => Ok(Some(fail(&e))),
            }
        }
        AuditCommand::Tail { limit, json } => {
            let v = match c
                .call("GET", &format!("/v1/audit?limit={limit}"), None)
                .await
            {
                Ok(v) => v,
                Err(e) => return Ok(Some(fail(&e))),
            };
            for e in v.as_array().into_iter().flatten() {
                if *json {
                    let mut event = e.clone();
                    let seq = event
                        .as_object_mut()
                        .and_then(|o| o.remove("position"))
                        .unwrap_or(Value::Null);
                    println!("{}", json!({"seq": seq, "event": event}));
                } else {
                    let time = e["time_ns"]
                        .as_i64()
                        .map(|ns| {
                            chrono::DateTime::from_timestamp_nanos(ns)
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        })
                        .unwrap_or_default();
                    println!(
                        "{:>8}  {}  {:<12} {:<18} {:<28} {}{}",
                        e["position"],
                        time,
                        e["principal"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["resource"].as_str().unwrap_or(""),
                        e["outcome"].as_str().unwrap_or(""),
                        e["error_code"]
                            .as_str()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(Some(0))
        }
        _ => Ok(None),
    }
}
