//! Human-readable output: progress bar, run summary, run listings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use custos_engine::{Progress, RunRecord, RunSummary};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// A progress bar on stderr fed from `progress` by a background thread until `stop` is set.
pub fn progress_bar(progress: Arc<Progress>) -> (ProgressBar, Arc<AtomicBool>) {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (pb2, stop2) = (pb.clone(), stop.clone());
    std::thread::spawn(move || {
        let start = Instant::now();
        while !stop2.load(Ordering::Relaxed) {
            let rows = progress.rows_read.load(Ordering::Relaxed);
            pb2.set_length(progress.bytes_total.load(Ordering::Relaxed));
            pb2.set_position(progress.bytes_read.load(Ordering::Relaxed));
            let secs = start.elapsed().as_secs_f64().max(0.001);
            pb2.set_message(format!(
                "{rows} rows read, {:.0} rows/s, {} rows written",
                rows as f64 / secs,
                progress.rows_written.load(Ordering::Relaxed)
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (pb, stop)
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t
}

/// Prints a run summary.
pub fn print_summary(s: &RunSummary) {
    let mut t = table();
    t.set_header(vec![
        "component",
        "type",
        "in",
        "out",
        "quarantined",
        "filtered",
        "added",
    ]);
    for c in &s.components {
        t.add_row(vec![
            Cell::new(format!("{}.{}", c.section, c.name)),
            Cell::new(&c.r#type),
            Cell::new(c.rows_in),
            Cell::new(c.rows_out),
            Cell::new(c.quarantined),
            Cell::new(c.filtered),
            Cell::new(c.added),
        ]);
    }
    println!("{t}");
    let secs = (s.duration_ms as f64 / 1000.0).max(0.001);
    println!(
        "run {} {} in {:.2}s: {} rows read ({:.0} rows/s), {} written, {} quarantined, {} filtered",
        s.run_id,
        s.status,
        secs,
        s.rows_read,
        s.rows_read as f64 / secs,
        s.rows_written,
        s.rows_quarantined,
        s.rows_filtered
    );
    for o in &s.outputs {
        println!(
            "  wrote {} ({} rows, {})",
            o.path.display(),
            o.rows,
            HumanBytes(o.size)
        );
    }
    if let Some(q) = &s.quarantine_file {
        println!(
            "  quarantine: {} ({} rows)",
            q.display(),
            s.rows_quarantined
        );
    }
    if let Some(e) = &s.error {
        eprintln!("custos: run {}: {e}", s.status);
        if s.status != custos_engine::RunStatus::Succeeded {
            eprintln!("custos: no sink was changed");
        }
    }
}

/// Prints a list of runs.
pub fn print_runs(runs: &[RunRecord]) {
    if runs.is_empty() {
        println!("no runs recorded");
        return;
    }
    let mut t = table();
    t.set_header(vec![
        "id",
        "pipeline",
        "started",
        "status",
        "read",
        "written",
        "quarantined",
    ]);
    for r in runs {
        t.add_row(vec![
            Cell::new(&r.id),
            Cell::new(&r.pipeline),
            Cell::new(&r.started_at),
            Cell::new(&r.status),
            Cell::new(r.rows_read),
            Cell::new(r.rows_written),
            Cell::new(r.rows_quarantined),
        ]);
    }
    println!("{t}");
}

/// Prints one run in full.
pub fn print_run(r: &RunRecord) {
    println!("run        {}", r.id);
    println!("pipeline   {}", r.pipeline);
    println!("config     {} (sha256 {})", r.config_path, r.config_hash);
    println!("status     {}", r.status);
    if let Some(e) = &r.error {
        println!("error      {e}");
    }
    println!("started    {}", r.started_at);
    println!("ended      {}", r.ended_at.as_deref().unwrap_or("-"));
    println!("host/pid   {}/{}", r.host, r.pid);
    println!(
        "rows       {} read, {} written, {} quarantined, {} filtered; invariant {}",
        r.rows_read,
        r.rows_written,
        r.rows_quarantined,
        r.rows_filtered,
        match r.invariant_ok {
            Some(true) => "held",
            Some(false) => "BROKEN",
            None => "not checked",
        }
    );
    if !r.components.is_empty() {
        let mut t = table();
        t.set_header(vec![
            "component",
            "type",
            "in",
            "out",
            "quarantined",
            "filtered",
            "added",
        ]);
        for c in &r.components {
            t.add_row(vec![
                Cell::new(format!("{}.{}", c.section, c.name)),
                Cell::new(&c.r#type),
                Cell::new(c.rows_in),
                Cell::new(c.rows_out),
                Cell::new(c.quarantined),
                Cell::new(c.filtered),
                Cell::new(c.added),
            ]);
        }
        println!("{t}");
    }
    if !r.files.is_empty() {
        let mut t = table();
        t.set_header(vec!["role", "component", "path", "size", "sha256"]);
        for f in &r.files {
            t.add_row(vec![
                Cell::new(&f.role),
                Cell::new(&f.component),
                Cell::new(f.path.display()),
                Cell::new(f.size),
                Cell::new(&f.sha256),
            ]);
        }
        println!("{t}");
    }
}
