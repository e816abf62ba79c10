//! The component graph: resolves `inputs`, finds dangling references and cycles, and gives the
//! order in which components are built.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostics, SourceMap};
use crate::model::PipelineConfig;

/// The resolved DAG of a valid pipeline.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Component names in an order where every input comes before its consumers.
    pub order: Vec<String>,
    /// For every component, the components that read it.
    pub consumers: BTreeMap<String, Vec<String>>,
    /// Components read by several consumers whose paths meet again downstream (a "diamond",
    /// e.g. two branches of one source joined later). Their rows must be buffered for the
    /// slower branch instead of applying back-pressure, which would deadlock.
    pub reconverging: BTreeSet<String>,
}

impl Graph {
    /// Runs the graph checks, adding diagnostics. `declared` holds every declared name with
    /// its section, including components whose own options failed to load.
    pub(crate) fn check(
        edges: &[(&'static str, String, Vec<String>)],
        declared: &[(String, String)],
        map: &SourceMap,
        diags: &mut Diagnostics,
    ) {
        for (section, name, inputs) in edges {
            let mut seen = BTreeSet::new();
            for (i, input) in inputs.iter().enumerate() {
                let key = format!("{section}.{name}.inputs[{i}]");
                if !seen.insert(input.as_str()) {
                    diags.push(map.error_at(&key, format!("input \"{input}\" is listed twice")));
                    continue;
                }
                if input == name {
                    diags.push(map.error_at(
                        &key,
                        format!("component \"{name}\" cannot read its own output"),
                    ));
                    continue;
                }
                match declared.iter().find(|(n, _)| n == input) {
                    None => {
                        let mut msg = format!("no component named \"{input}\"");
                        let candidates = declared
                            .iter()
                            .filter(|(n, s)| s != "sinks" && n != name)
                            .map(|(n, _)| n.as_str());
                        if let Some(d) = custos_core::did_you_mean(input, candidates) {
                            msg.push_str(&format!("; did you mean \"{d}\"?"));
                        }
                        diags.push(map.error_at(&key, msg));
                    }
                    Some((_, s)) if s == "sinks" => {
                        diags.push(map.error_at(
                            &key,
                            format!("\"{input}\" is a sink; sinks produce no output to read"),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for cycle in find_cycles(edges) {
            let first = &cycle[0];
            let section = edges
                .iter()
                .find(|(_, n, _)| n == first)
                .map_or("transforms", |(s, _, _)| s);
            let mut path = cycle.clone();
            path.push(first.clone());
            diags.push(map.error_at(
                &format!("{section}.{first}.inputs"),
                format!(
                        "cycle: {}",
                        path.iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    ),
            ));
        }
        let consumed: BTreeSet<&str> = edges
            .iter()
            .flat_map(|(_, _, i)| i.iter().map(String::as_str))
            .collect();
        for (name, section) in declared {
            if section != "sinks" && !consumed.contains(name.as_str()) {
                diags.push(map.warning_at(
                    &format!("{section}.{name}"),
                    format!("component \"{name}\" is not read by any transform or sink"),
                ));
            }
        }
    }

    /// Builds the graph of a config that passed [`crate::load`] without errors.
    pub fn build(config: &PipelineConfig) -> Graph {
        let edges = edges(config);
        let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &config.sources {
            consumers.entry(s.name.clone()).or_default();
        }
        for (_, name, inputs) in &edges {
            consumers.entry(name.clone()).or_default();
            for i in inputs {
                consumers.entry(i.clone()).or_default().push(name.clone());
            }
        }
        // Kahn's algorithm, taking components in declaration order for a stable result.
        let decl: Vec<String> = config
            .sources
            .iter()
            .map(|s| s.name.clone())
            .chain(edges.iter().map(|(_, n, _)| n.clone()))
            .collect();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < decl.len() {
            let before = order.len();
            for n in &decl {
                if done.contains(n) {
                    continue;
                }
                let ready = edges
                    .iter()
                    .find(|(_, name, _)| name == n)
                    .is_none_or(|(_, _, ins)| ins.iter().all(|i| done.contains(i)));
                if ready {
                    done.insert(n.clone());
                    order.push(n.clone());
                }
            }
            if order.len() == before {
                break; // a cycle; load() has reported it
            }
        }
        let mut reconverging = BTreeSet::new();
        for (name, cs) in &consumers {
            let reach: Vec<BTreeSet<String>> =
                cs.iter().map(|c| downstream(c, &consumers)).collect();
            let meets = reach
                .iter()
                .enumerate()
                .any(|(i, a)| reach[i + 1..].iter().any(|b| !a.is_disjoint(b)));
            if meets {
                reconverging.insert(name.clone());
            }
        }
        Graph {
            order,
            consumers,
            reconverging,
        }
    }
}

/// `start` and every component downstream of it.
fn downstream(start: &str, consumers: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_string()];
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone()) {
            todo.extend(consumers.get(&n).into_iter().flatten().cloned());
        }
    }
    seen
}

/// (section, name, inputs) for every transform and sink.
fn edges(config: &PipelineConfig) -> Vec<(&'static str, String, Vec<String>)> {
    config
        .transforms
        .iter()
        .map(|t| ("transforms", t.name.clone(), t.inputs.clone()))
        .chain(
            config
                .sinks
                .iter()
                .map(|s| ("sinks", s.name.clone(), s.inputs.clone())),
        )
        .collect()
}

/// Every elementary cycle found by depth-first search, each reported once.
fn find_cycles(edges: &[(&str, String, Vec<String>)]) -> Vec<Vec<String>> {
    let adj: BTreeMap<&str, Vec<&str>> = edges
        .iter()
        .map(|(_, n, ins)| (n.as_str(), ins.iter().map(String::as_str).collect()))
        .collect();
    let mut cycles: Vec<Vec<String>> = Vec::new();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on stack, 2 = done
    fn dfs<'a>(
        n: &'a str,
        adj: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
        reported: &mut BTreeSet<BTreeSet<String>>,
    ) {
        state.insert(n, 1);
        stack.push(n);
        for &m in adj.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if m == n {
                continue; // self-input is reported separately
            }
            match state.get(m) {
                Some(1) => {
                    let pos = stack.iter().position(|s| *s == m).unwrap_or(0);
                    let mut cyc: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
                    // Report in data-flow order (input before consumer).
                    cyc.reverse();
                    let key: BTreeSet<String> = cyc.iter().cloned().collect();
                    if reported.insert(key) {
                        cycles.push(cyc);
                    }
                }
                Some(_) => {}
                None => {
                    if adj.contains_key(m) {
                        dfs(m, adj, state, stack, cycles, reported);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
    }
    for (_, n, _) in edges {
        if !state.contains_key(n.as_str()) {
            let mut stack = Vec::new();
            dfs(n, &adj, &mut state, &mut stack, &mut cycles, &mut reported);
        }
    }
    cycles
}
