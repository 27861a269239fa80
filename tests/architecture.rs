//! The shape of `host/src`, checked: every module sits in a layer, imports only its own layer or
//! lower ones, and no two files import each other through any chain (no import cycles).
//!
//! Imports are read from the source text: `use crate::…` (with `{…}` groups), `super::…` and
//! `crate::…` paths in code. A parent's `mod`/`pub use` of its own children only names them and is
//! not an import. Plain text, no compiler: fast, and it fails with the offending file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the bottom up. A module path matches the longest entry that is a prefix of it.
const LAYERS: &[(&str, u8)] = &[
    // 0 base: plain data and helpers everything may use.
    ("clock", 0),
    ("files", 0),
    ("mimetype", 0),
    ("names", 0),
    ("values", 0),
    ("exports", 0),
    ("schedules", 0),
    ("metrics", 0),
    ("outcome", 0),
    // 1 storage: libraries with backend traits (sled + local dirs today).
    ("store", 1),
    ("storage", 1),
    // 2 the manifest, 3 the models it names.
    ("manifest", 2),
    ("models", 3),
    // 4 capabilities: the WIT adapters, each on its own view.
    ("capabilities", 4),
    // 5 the sandbox: one instance, one call.
    ("engine", 5),
    ("call", 5),
    // 6 one path for every call, and queued executions.
    ("invocation", 6),
    ("function", 6),
    ("runner", 6),
    ("map", 6),
    // 7 the embedding API and the triggers that start calls.
    ("host", 7),
    ("triggers", 7),
    ("deploy", 7),
    ("lib", 7),
    // 8 thin layers over the library.
    ("server", 8),
    ("client", 8),
    ("build", 8),
    ("watch", 8),
    // 9 the binary.
    ("cli", 9),
    ("main", 9),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `capabilities/kv/mod.rs` → `capabilities/kv`; `lib.rs` → `lib`.
fn module_of(file: &Path, root: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let rel = rel.to_string_lossy().replace('\\', "/");
    rel.strip_suffix("/mod").unwrap_or(&rel).to_string()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}/")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|&(_, layer)| layer)
}

/// Source without comments and string literals (so doc examples and messages are not imports).
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' or '{' must not open a string or a group.
            '\'' if matches!(chars.clone().nth(1), Some('\'')) => {
                chars.next();
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path that starts at `crate::` or `super::` in `code`, with `{…}` groups expanded, as
/// (path segments relative to the crate root, line number).
fn paths(code: &str, module: &str) -> Vec<(Vec<String>, usize)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        let start = if !boundary {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            // `super` of module `a/b` (file a/b.rs or a/b/mod.rs) is `a`.
            let mut base: Vec<String> = module.split('/').map(String::from).collect();
            base.pop();
            let mut len = "super::".len();
            while code[i + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            Some((base, len))
        } else {
            None
        };
        let Some((base, len)) = start else {
            i += 1;
            continue;
        };
        let line = code[..i].matches('\n').count() + 1;
        let (tree, used) = parse_tree(&code[i + len..]);
        for mut tail in tree {
            let mut full = base.clone();
            full.append(&mut tail);
            found.push((full, line));
        }
        i += len + used.max(1);
    }
    found
}

/// Parse `a::b::{c, d::{e}}`-style trees: the expanded paths and the bytes consumed.
fn parse_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut prefix = Vec::new();
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            let mut all = Vec::new();
            i += 1;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    i += 1;
                    break;
                }
                let (sub, used) = parse_tree(&text[i..]);
                for mut s in sub {
                    let mut p = prefix.clone();
                    p.append(&mut s);
                    all.push(p);
                }
                i += used.max(1);
            }
            return (all, i);
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let ident = &text[start..i];
        if ident.is_empty() {
            return (vec![prefix], i);
        }
        if ident != "self" {
            prefix.push(ident.to_string());
        }
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            // Skip an `as name` rename.
            let after = text[i..].trim_start();
            if let Some(renamed) = after.strip_prefix("as ") {
                let name_len = renamed.trim_start().find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(0);
                i = text.len() - renamed.trim_start().len() + name_len;
            }
            return (vec![prefix], i);
        }
    }
}

/// The file a path lands in: the longest prefix of it that is a module with a file, after
/// replacing a first segment that the crate root re-exports (`crate::Host`, `crate::executions`)
/// by the path it re-exports.
fn target(path: &[String], modules: &BTreeSet<String>, reexports: &BTreeMap<String, Vec<String>>) -> Option<String> {
    let path: Vec<String> = match path.split_first().and_then(|(first, rest)| Some((reexports.get(first)?, rest))) {
        Some((real, rest)) => real.iter().chain(rest).cloned().collect(),
        None => path.to_vec(),
    };
    (1..=path.len()).rev().map(|n| path[..n].join("/")).find(|m| modules.contains(m))
}

/// What `lib.rs` re-exports with `pub use crate::…`: the name it gives → the path it names.
fn reexports(root: &Path) -> BTreeMap<String, Vec<String>> {
    let code = code_only(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let mut names = BTreeMap::new();
    for line in code.lines().filter(|l| l.trim_start().starts_with("pub use crate::")) {
        for (path, _) in paths(line, "lib") {
            if let Some(last) = path.last() {
                names.insert(last.clone(), path);
            }
        }
    }
    names
}

struct Graph {
    /// module → (imported module → first line importing it).
    edges: BTreeMap<String, BTreeMap<String, usize>>,
    /// module → its file, relative to `host/src`.
    file: BTreeMap<String, String>,
}

fn graph() -> Graph {
    let root = src_dir();
    let mut all = Vec::new();
    files(&root, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_of(f, &root)).collect();
    let reexports = reexports(&root);
    let mut edges = BTreeMap::new();
    let mut file_of = BTreeMap::new();
    for file in &all {
        let module = module_of(file, &root);
        file_of.insert(module.clone(), file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let mut out: BTreeMap<String, usize> = BTreeMap::new();
        for (path, line) in paths(&code, &module) {
            let Some(to) = target(&path, &modules, &reexports) else { continue };
            // Its own file, or a parent using its own children: a module and its submodules are
            // one unit (`mod x; pub use x::Y;`), while a child's `super::` use is still an edge.
            if to == module || to.starts_with(&format!("{module}/")) {
                continue;
            }
            out.entry(to).or_insert(line);
        }
        edges.insert(module, out);
    }
    Graph { edges, file: file_of }
}

#[test]
fn every_module_has_a_layer_and_imports_only_downwards() {
    let graph = graph();
    let mut problems = Vec::new();
    for (from, tos) in &graph.edges {
        let Some(own) = layer(from) else {
            problems.push(format!("{}: module `{from}` is in no layer; add it to LAYERS", graph.file[from]));
            continue;
        };
        for (to, line) in tos {
            let theirs = layer(to).unwrap_or(u8::MAX);
            if theirs > own {
                problems.push(format!(
                    "{}:{line}: `{from}` (layer {own}) imports `{to}` (layer {theirs})",
                    graph.file[from]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn no_import_cycles_between_files() {
    let graph = graph();
    // Tarjan's strongly connected components; any component of two or more files is a cycle.
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        cycles: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.edges.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.cycles.push(component);
            }
        }
    }
    let mut state = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for v in graph.edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    let described: Vec<String> = state
        .cycles
        .iter()
        .map(|cycle| {
            let inside = |m: &str| cycle.contains(&m);
            let links: Vec<String> = cycle
                .iter()
                .flat_map(|from| {
                    let file = &graph.file[*from];
                    graph.edges[*from]
                        .iter()
                        .filter(|(to, _)| inside(to))
                        .map(move |(to, line)| format!("{file}:{line} -> `{to}`"))
                })
                .collect();
            format!("{} files: {}", cycle.len(), links.join("; "))
        })
        .collect();
    assert!(described.is_empty(), "import cycles:\n{}", described.join("\n"));
}

#[test]
fn no_source_file_is_over_500_lines() {
    let root = src_dir();
    let mut all = Vec::new();
    files(&root, &mut all);
    let long: Vec<String> = all
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 500).then(|| format!("{} ({lines} lines)", f.strip_prefix(&root).unwrap().display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 500 lines: {}", long.join(", "));
}

/// The reader itself: groups, renames, `super`, comments and strings.
#[test]
fn imports_are_read_from_code_only() {
    let code = code_only(
        "use crate::{a::{b, c as d}, e};\n// crate::commented\nlet s = \"crate::in_string\";\nsuper::f::g();\n",
    );
    let found: Vec<String> = paths(&code, "x/y").into_iter().map(|(p, _)| p.join("/")).collect();
    assert_eq!(found, ["a/b", "a/c", "e", "x/f/g"]);
}

/// Imports through the crate root's re-exports count as imports of the module behind them.
#[test]
fn root_reexports_lead_to_their_modules() {
    let root = src_dir();
    let mut all = Vec::new();
    files(&root, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_of(f, &root)).collect();
    let reexports = reexports(&root);
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(target(&path(&["Host"]), &modules, &reexports).as_deref(), Some("host"));
    assert_eq!(
        target(&path(&["executions", "Execution"]), &modules, &reexports).as_deref(),
        Some("storage/executions")
    );
}
