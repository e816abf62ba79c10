//! Builds one DataFusion session holding every component of a pipeline as a table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custos_config::{
    Diagnostics, Graph, Loaded, PipelineConfig, SourceKind, SourceMap, TransformKind,
};
use custos_connectors::files::local_store;
use custos_connectors::quarantine::Quarantine;
use custos_connectors::source::{SourceReader, SourceStats, discover};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;

use crate::component::ComponentTable;
use crate::exec::{BatchOp, Counter, MapExec};
use crate::protect::ProtectOp;
use crate::rewrap::RewrapOp;
use crate::validate::{ValidateOp, ValidateStats};
use custos_transforms::udf::UdfEnv;

/// A pipeline planned into a session.
pub(crate) struct Planned {
    pub ctx: SessionContext,
    pub graph: Graph,
    pub store: Arc<dyn ObjectStore>,
    /// Sources: name, live counters, total bytes of the input files (0 for databases).
    pub sources: Vec<(String, Arc<SourceStats>, u64)>,
    pub counters: BTreeMap<String, Arc<Counter>>,
    pub validates: BTreeMap<String, Arc<ValidateStats>>,
    /// Columns the pipeline decrypts (protect actions and SQL decrypt functions), each once.
    pub decrypts: Vec<String>,
    /// Keys the pipeline protects data with, and how, each once; no other use of a key can
    /// happen in the run (the UDF environment is sealed).
    pub key_uses: Vec<custos_transforms::udf::KeyUse>,
}

/// Phase two of validation: discovers sources, plans every SQL query and compiles every rule,
/// without running anything. Keys come from `unlocked` when it is the keystore of
/// `state_dir` (a server's), else from that keystore (or `$CUSTOS_KEYSTORE`, or the
/// transform's `keystore`) opened with the environment's passphrase. Returns phase one's
/// diagnostics plus these.
pub async fn check(
    loaded: &Loaded,
    state_dir: &Path,
    unlocked: Option<&custos_keys::Keystore>,
) -> Diagnostics {
    let mut diags = loaded.diagnostics.clone();
    if !diags.has_errors() {
        let q = Arc::new(Quarantine::new(
            std::env::temp_dir().join("custos-check-unused.jsonl"),
        ));
        let _ = plan(
            &loaded.config,
            &loaded.map,
            state_dir,
            unlocked,
            q,
            &mut diags,
        )
        .await;
    }
    diags.sort();
    diags
}

fn session(config: &PipelineConfig, env: &Arc<UdfEnv>) -> SessionContext {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cfg = SessionConfig::new()
        .with_target_partitions(cores)
        .with_batch_size(config.pipeline.batch_size.unwrap_or(8192))
        .with_information_schema(false);
    // Sources are read in file order in one partition; round-robin repartitioning would
    // interleave rows, so it is only enabled when the pipeline opts out of keeping order.
    cfg.options_mut().optimizer.enable_round_robin_repartition = !config.pipeline.preserve_order;
    cfg.options_mut().optimizer.repartition_file_scans = !config.pipeline.preserve_order;
    let state = SessionStateBuilder::new()
        .with_config(cfg)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    for udf in custos_transforms::udf::all(env) {
        ctx.register_udf(udf);
    }
    ctx
}

/// Whether the pipeline uses keys: a protect action with a key, a rewrap, or a SQL query
/// calling a protection function that takes one.
fn needs_keys(config: &PipelineConfig) -> Option<Option<&str>> {
    const KEYED: &[&str] = &[
        "encrypt",
        "decrypt",
        "fpe",
        "fpe_decrypt",
        "tokenize",
        "date_shift",
        "encrypt_deterministic",
        "decrypt_deterministic",
    ];
    let mut needed = false;
    let mut configured = None;
    for t in &config.transforms {
        match &t.kind {
            TransformKind::Protect(p) => {
                if p.columns.0.iter().any(|(_, a)| !a.keys().is_empty()) {
                    needed = true;
                    configured = configured.or(p.keystore.as_deref());
                }
            }
            TransformKind::Rewrap(r) => {
                needed = true;
                configured = configured.or(r.keystore.as_deref());
            }
            TransformKind::Sql(q) => {
                let lower = q.query.to_ascii_lowercase();
                if KEYED.iter().any(|f| {
                    lower.match_indices(f).any(|(i, _)| {
                        let before = lower[..i].chars().next_back();
                        let after = lower[i + f.len()..].trim_start().chars().next();
                        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                            && after == Some('(')
                    })
                }) {
                    needed = true;
                }
            }
            TransformKind::Validate(_) => {}
        }
    }
    needed.then_some(configured)
}

fn plan_message(e: &DataFusionError) -> String {
    let msg = e.strip_backtrace();
    let msg = msg
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("SQL error: ")
        .trim_start_matches("Schema error: ");
    msg.lines().next().unwrap_or("").to_string()
}

/// Explains a SQL planning error, naming the transform's inputs when a table is unknown.
fn sql_error(config: &PipelineConfig, inputs: &[String], e: &DataFusionError) -> String {
    let msg = plan_message(e);
    let missing = msg
        .strip_prefix("table '")
        .and_then(|r| r.strip_suffix("' not found"))
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_string());
    match missing {
        Some(t) if config.component_kind(&t).is_some() => {
            format!(
                "query reads \"{t}\" which is not in `inputs`; add to `inputs` what the query reads"
            )
        }
        Some(t) => {
            let mut m = format!(
                "no table named \"{t}\"; the query can read its inputs: {}",
                inputs
                    .iter()
                    .map(|i| format!("\"{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(d) = custos_core::did_you_mean(&t, inputs.iter().map(String::as_str)) {
                m.push_str(&format!("; did you mean \"{d}\"?"));
            }
            m
        }
        None => format!("SQL does not plan: {msg}"),
    }
}

/// Tables a plan (and its subqueries) reads.
/// The columns whose values `decrypt`, `decrypt_deterministic` or `fpe_decrypt` reveal in a SQL
/// plan: the first argument's column name (as the functions bind it), or its expression text.
fn decrypted_columns(plan: &LogicalPlan, out: &mut Vec<String>) {
    use datafusion::logical_expr::Expr;
    let _ = plan.apply_with_subqueries(|n| {
        n.apply_expressions(|e| {
            e.apply(|sub| {
                if let Expr::ScalarFunction(f) = sub
                    && matches!(
                        f.name(),
                        "decrypt" | "decrypt_deterministic" | "fpe_decrypt"
                    )
                    && let Some(arg) = f.args.first()
                {
                    let column = match arg {
                        Expr::Column(c) => c.name.clone(),
                        other => other.schema_name().to_string(),
                    };
                    if !out.contains(&column) {
                        out.push(column);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
}

fn table_names(plan: &LogicalPlan) -> Vec<String> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|n| {
        if let LogicalPlan::TableScan(t) = n {
            out.push(t.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Plans the pipeline. Problems become diagnostics; `None` when any component failed.
pub(crate) async fn plan(
    config: &PipelineConfig,
    map: &SourceMap,
    state_dir: &Path,
    unlocked: Option<&custos_keys::Keystore>,
    quarantine: Arc<Quarantine>,
    diags: &mut Diagnostics,
) -> Option<Planned> {
    let graph = Graph::build(config);
    let keys = match needs_keys(config) {
        Some(configured) => match open_keys(config, state_dir, unlocked, configured).await {
            Ok(k) => Ok(Arc::new(k)),
            Err(e) => {
                diags.push(map.error_at_key("transforms", e));
                return None;
            }
        },
        None => Err("the pipeline opened no keystore".to_string()),
    };
    let env = UdfEnv::new(keys.clone(), config.detection.detector_config());
    let ctx = session(config, &env);
    let store = local_store();
    let batch_size = config.pipeline.batch_size.unwrap_or(8192);
    let mut failed: Vec<String> = Vec::new();
    let mut sources = Vec::new();
    let mut counters = BTreeMap::new();
    let mut validates = BTreeMap::new();
    let mut decrypts: Vec<String> = Vec::new();
    let mut tables: BTreeMap<String, Arc<dyn TableProvider>> = BTreeMap::new();
    // Input files per source (empty for databases), for provenance in quarantine records.
    let mut files: Vec<Vec<PathBuf>> = Vec::new();

    for (i, s) in config.sources.iter().enumerate() {
        if let SourceKind::Postgres(pg) = &s.kind {
            let stats = Arc::new(SourceStats::default());
            let found = custos_connectors::postgres::source::discover(
                i as u32,
                &s.name,
                pg,
                &config.base_dir,
                config.danger.allow_insecure_db,
                batch_size,
                config.pipeline.preserve_order,
            )
            .await;
            match found {
                Ok(spec) => {
                    let labels = spec.labels().into_iter().map(PathBuf::from).collect();
                    let reader = custos_connectors::postgres::source::PgSourceReader::new(
                        Arc::new(spec),
                        quarantine.clone(),
                        stats.clone(),
                    );
                    match reader.into_table() {
                        Ok(t) => {
                            tables.insert(s.name.clone(), t);
                            files.push(labels);
                            sources.push((s.name.clone(), stats, 0));
                        }
                        Err(e) => {
                            diags.push(
                                map.error_at(&format!("sources.{}", s.name), plan_message(&e)),
                            );
                            failed.push(s.name.clone());
                        }
                    }
                }
                Err(e) => {
                    diags.push(map.error_at_key(&format!("sources.{}", s.name), e.to_string()));
                    failed.push(s.name.clone());
                }
            }
            continue;
        }
        let resolved = config.resolve(s.kind.path().unwrap_or_default());
        match discover(i as u32, &s.name, &s.kind, &resolved, &store, batch_size).await {
            Ok(spec) => {
                let spec = Arc::new(spec);
                let stats = Arc::new(SourceStats::default());
                let reader = SourceReader::new(
                    spec.clone(),
                    store.clone(),
                    quarantine.clone(),
                    stats.clone(),
                );
                match reader.into_table() {
                    Ok(t) => {
                        tables.insert(s.name.clone(), t);
                        let size = spec.files.iter().map(|f| f.size).sum();
                        files.push(spec.files.iter().map(|f| f.path.clone()).collect());
                        sources.push((s.name.clone(), stats, size));
                    }
                    Err(e) => {
                        diags.push(map.error_at(&format!("sources.{}", s.name), plan_message(&e)));
                        failed.push(s.name.clone());
                    }
                }
            }
            Err(e) => {
                diags.push(map.error_at(&format!("sources.{}.path", s.name), e.to_string()));
                failed.push(s.name.clone());
            }
        }
    }
    let files: Arc<Vec<Vec<PathBuf>>> = Arc::new(files);
    let today = chrono::Utc::now().date_naive();

    let register = |name: &str,
                    table: Arc<dyn TableProvider>,
                    counters: &mut BTreeMap<String, Arc<Counter>>|
     -> Result<(), DataFusionError> {
        let counter = Arc::new(Counter::default());
        let consumers = graph.consumers.get(name).map_or(0, Vec::len);
        counters.insert(name.to_string(), counter.clone());
        let reconverging = graph.reconverging.contains(name);
        let table = ComponentTable::new(name, table, counter, consumers, reconverging);
        ctx.register_table(name, Arc::new(table))?;
        Ok(())
    };
    for name in &graph.order {
        if let Some(t) = tables.remove(name) {
            if let Err(e) = register(name, t, &mut counters) {
                diags.push(map.error_at(&format!("sources.{name}"), plan_message(&e)));
                failed.push(name.clone());
            }
            continue;
        }
        let Some(t) = config.transforms.iter().find(|t| &t.name == name) else {
            continue;
        };
        let key = format!("transforms.{name}");
        if t.inputs.iter().any(|i| failed.contains(i)) {
            failed.push(name.clone());
            continue;
        }
        let table: Result<Arc<dyn TableProvider>, ()> = match &t.kind {
            TransformKind::Sql(sql) => match ctx.state().create_logical_plan(&sql.query).await {
                Err(e) => {
                    diags.push(
                        map.error_at(&format!("{key}.query"), sql_error(config, &t.inputs, &e)),
                    );
                    Err(())
                }
                Ok(lp) => {
                    decrypted_columns(&lp, &mut decrypts);
                    let read = table_names(&lp);
                    let outside: Vec<&String> =
                        read.iter().filter(|r| !t.inputs.contains(r)).collect();
                    if !outside.is_empty() {
                        diags.push(map.error_at(
                            &format!("{key}.query"),
                            format!("query reads {} which {} not in `inputs`; add to `inputs` what the query reads", outside.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "), if outside.len() == 1 { "is" } else { "are" }),
                        ));
                        Err(())
                    } else {
                        for (ii, input) in t.inputs.iter().enumerate() {
                            if !read.contains(input) {
                                diags.push(map.warning_at(
                                    &format!("{key}.inputs[{ii}]"),
                                    format!("input \"{input}\" is not read by the query"),
                                ));
                            }
                        }
                        match crate::provenance::carry_origin(lp) {
                            Ok(lp) => Ok(DataFrame::new(ctx.state(), lp).into_view()),
                            Err(e) => {
                                diags.push(map.error_at(
                                    &format!("{key}.query"),
                                    format!("SQL does not plan: {}", plan_message(&e)),
                                ));
                                Err(())
                            }
                        }
                    }
                }
            },
            kind => match single_input(&ctx, t, &key, map, diags).await {
                None => Err(()),
                Some(provider) => {
                    let stats = Arc::new(ValidateStats::default());
                    let schema = provider.schema();
                    let (q, f) = (quarantine.clone(), files.clone());
                    let compiled: Result<Arc<dyn BatchOp>, Vec<(String, String)>> = match kind {
                        TransformKind::Rewrap(r) => match keys.clone() {
                            Err(e) => Err(vec![("keystore".into(), e)]),
                            Ok(k) => {
                                RewrapOp::compile(name, &r.columns, &schema, k, q, f, stats.clone())
                                    .map(|o| Arc::new(o) as Arc<dyn BatchOp>)
                            }
                        },
                        TransformKind::Protect(p) => {
                            for (column, action) in &p.columns.0 {
                                if action.reveals() && !decrypts.contains(column) {
                                    decrypts.push(column.clone());
                                }
                            }
                            ProtectOp::compile(name, &p.columns, &schema, &env, q, f, stats.clone())
                                .map(|o| Arc::new(o) as Arc<dyn BatchOp>)
                        }
                        TransformKind::Validate(v) => {
                            ValidateOp::compile(name, &v.rules, &schema, q, f, stats.clone(), today)
                                .map(|o| Arc::new(o) as Arc<dyn BatchOp>)
                        }
                        TransformKind::Sql(_) => Err(Vec::new()),
                    };
                    let table = op_table(compiled, provider, &key, map, diags);
                    if table.is_ok() {
                        validates.insert(name.clone(), stats);
                    }
                    table
                }
            },
        };
        match table {
            Ok(tbl) => {
                if let Err(e) = register(name, tbl, &mut counters) {
                    diags.push(map.error_at(&key, plan_message(&e)));
                    failed.push(name.clone());
                }
            }
            Err(()) => failed.push(name.clone()),
        }
    }
    let declared = crate::gate::declared(config);
    for s in &config.sinks {
        let input = &s.inputs[0];
        if failed.contains(input) {
            continue;
        }
        if let Ok(t) = ctx.table_provider(input.as_str()).await {
            for (column, class) in
                crate::gate::static_violations(config, &s.name, &t.schema(), &declared)
            {
                diags.push(map.error_at(
                    &format!("sinks.{}", s.name),
                    format!(
                        "{}; protect it (a `protect` transform or a protection function in SQL) or allow it under [danger] allow_plaintext = [\"{}.{column}\"]",
                        crate::gate::blocked(&s.name, &column, &class),
                        s.name
                    ),
                ));
            }
            let visible = t
                .schema()
                .fields()
                .iter()
                .filter(|f| !custos_core::is_reserved_column(f.name()))
                .count();
            if visible == 0 {
                diags.push(map.error_at(
                    &format!("sinks.{}.inputs[0]", s.name),
                    format!("input \"{input}\" has no columns to write"),
                ));
            }
        }
    }
    for name in &graph.reconverging {
        let section = if config.sources.iter().any(|s| &s.name == name) {
            "sources"
        } else {
            "transforms"
        };
        diags.push(map.warning_at(
            &format!("{section}.{name}"),
            format!("the consumers of \"{name}\" meet again downstream; rows for the slower branch are buffered in memory (up to the whole output of \"{name}\")"),
        ));
    }
    if diags.has_errors() {
        return None;
    }
    env.seal();
    Some(Planned {
        ctx,
        graph,
        store,
        sources,
        counters,
        validates,
        decrypts,
        key_uses: env.key_uses(),
    })
}

/// Opens the keystore named by the transform, `$CUSTOS_KEYSTORE` or the state directory's,
/// and unwraps every usable key version.
async fn open_keys(
    config: &PipelineConfig,
    state_dir: &Path,
    unlocked: Option<&custos_keys::Keystore>,
    configured: Option<&str>,
) -> Result<custos_keys::KeySet, String> {
    let path = match configured {
        Some(p) => config.resolve(p),
        None => custos_keys::keystore_path(state_dir),
    };
    if let Some(ks) = unlocked
        && ks.path() == path
    {
        return ks
            .key_set()
            .await
            .map_err(|e| format!("cannot load keys: {e}"));
    }
    let (pass, _) = custos_keys::Passphrase::from_env()
        .map_err(|e| format!("cannot open the keystore: {e}"))?;
    let ks = custos_keys::Keystore::open(&path, &pass)
        .map_err(|e| format!("cannot open the keystore: {e}"))?;
    ks.key_set()
        .await
        .map_err(|e| format!("cannot load keys: {e}"))
}

/// The one input of a row-transforming transform (rewrap, protect, validate).
async fn single_input(
    ctx: &SessionContext,
    t: &custos_config::Transform,
    key: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<Arc<dyn TableProvider>> {
    if t.inputs.len() != 1 {
        diags.push(map.error_at(
            &format!("{key}.inputs"),
            format!("a {} transform takes exactly one input", t.kind.type_name()),
        ));
        return None;
    }
    match ctx.table_provider(t.inputs[0].as_str()).await {
        Ok(p) => Some(p),
        Err(e) => {
            diags.push(map.error_at(&format!("{key}.inputs[0]"), plan_message(&e)));
            None
        }
    }
}

/// The table of a row-rejecting transform, or its compile errors as diagnostics under `key`.
fn op_table(
    compiled: Result<Arc<dyn BatchOp>, Vec<(String, String)>>,
    input: Arc<dyn TableProvider>,
    key: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Result<Arc<dyn TableProvider>, ()> {
    match compiled {
        Ok(op) => {
            let schema = match op.output_schema(&input.schema()) {
                Ok(s) => s,
                Err(e) => {
                    diags.push(map.error_at(key, plan_message(&e)));
                    return Err(());
                }
            };
            Ok(Arc::new(ValidateTable { input, op, schema }))
        }
        Err(errs) => {
            for (k, m) in errs {
                diags.push(map.error_at(&format!("{key}.{k}"), m));
            }
            Err(())
        }
    }
}

/// A validate transform as a table: its scan is a [`MapExec`] running the rules over the
/// input's plan.
#[derive(Debug)]
struct ValidateTable {
    input: Arc<dyn TableProvider>,
    op: Arc<dyn crate::exec::BatchOp>,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

#[async_trait::async_trait]
impl TableProvider for ValidateTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let input = self.input.scan(state, None, &[], None).await?;
        Ok(Arc::new(MapExec::try_new(
            input,
            self.op.clone(),
            projection.cloned(),
        )?))
    }
}
