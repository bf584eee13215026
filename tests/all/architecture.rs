//! The host's module structure (docs/architecture.md): capabilities are leaves and no modules
//! import each other in a loop. Read from the source: every `crate::…` path in `host/src`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Folders whose subfolders (or files) are units of their own: `capabilities::kv`.
const AREAS: [&str; 4] = ["capabilities", "triggers", "control", "fleet"];

/// What a capability may import besides itself: plain helpers that import no capability.
const CAPABILITY_MAY_USE: [&str; 6] = [
    "disk",
    "error",
    "group_commit",
    "metrics",
    "names",
    "secret",
];

/// The unit a module path belongs to: `capabilities::kv::backend` -> `capabilities::kv`.
fn unit_of(segments: &[&str]) -> Option<String> {
    let first = *segments.first()?;
    if AREAS.contains(&first) {
        let second = segments.get(1)?;
        Some(format!("{first}::{second}"))
    } else {
        Some(first.to_string())
    }
}

/// The unit of the file at `relative` (to host/src), e.g. `capabilities/kv/draft.rs`.
fn unit_of_file(relative: &Path) -> Option<String> {
    let mut segments: Vec<String> = relative
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match refs.as_slice() {
        ["lib"] | ["main"] => None,
        [area] if AREAS.contains(area) => None,
        other => unit_of(other),
    }
}

/// Every unit named by a `crate::` path in `source`, including `crate::{a, b::c}` groups.
fn referenced_units(source: &str) -> BTreeSet<String> {
    let mut units = BTreeSet::new();
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (index, _) in code.match_indices("crate::") {
        let rest = &code[index + "crate::".len()..];
        let paths: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(|p| p.trim().to_string())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            vec![rest[..end].to_string()]
        };
        for path in paths {
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            // A path into an area without the unit (`crate::capabilities::{kv, nn}`) is
            // followed by a group this scan does not split; count the area's units it names.
            if let Some(unit) = unit_of(&segments) {
                units.insert(unit);
            } else if let [area] = segments.as_slice()
                && AREAS.contains(area)
            {
                units.insert((*area).to_string());
            }
        }
    }
    units
}

/// unit -> units it imports, for every file under host/src.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = crate::harness::repo_root().join("host/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading host/src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let Some(unit) = unit_of_file(relative) else {
                continue;
            };
            let source = std::fs::read_to_string(&path).expect("reading source");
            let deps = graph.entry(unit.clone()).or_default();
            deps.extend(
                referenced_units(&source)
                    .into_iter()
                    .filter(|dep| *dep != unit),
            );
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the units along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        unit: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|u| u == unit) {
            let mut cycle = path[start..].to_vec();
            cycle.push(unit.to_string());
            return Some(cycle);
        }
        if done.contains(unit) {
            return None;
        }
        path.push(unit.to_string());
        for dep in graph.get(unit).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(unit.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|unit| visit(unit, graph, &mut Vec::new(), &mut done))
}

#[test]
fn host_modules_do_not_import_each_other_in_a_loop() {
    let graph = dependency_graph();
    assert!(
        graph.contains_key("capabilities::kv") && graph.contains_key("control::node"),
        "the layout changed; update this test: {graph:#?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import loop: {}\n{graph:#?}", cycle.join(" -> "));
    }
}

#[test]
fn capabilities_are_leaves() {
    let graph = dependency_graph();
    let capabilities: Vec<_> = graph
        .keys()
        .filter(|u| u.starts_with("capabilities::"))
        .collect();
    assert!(capabilities.len() >= 4, "{capabilities:?}");
    for unit in capabilities {
        for dep in &graph[unit] {
            assert!(
                CAPABILITY_MAY_USE.contains(&dep.as_str()),
                "{unit} imports {dep}: a capability may only use {CAPABILITY_MAY_USE:?}"
            );
        }
    }
}

#[test]
fn the_checker_sees_loops_and_groups() {
    let units = referenced_units(
        "use crate::{engine::X, capabilities::kv::Y};\n// crate::node in a comment\nfn f() { crate::control::node::g() }",
    );
    let expected: BTreeSet<String> = ["engine", "capabilities::kv", "control::node"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(units, expected);
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert!(find_cycle(&graph).is_some());
}
