//! Holds what names metric families to the table in [`super`]: an exposition (what a
//! scrape writes), the README's metric tables, the Grafana dashboard's queries, and the
//! Prometheus alert rules. Each
//! check returns the problems it found, one line each naming what and where; none means
//! agreement.

use std::collections::{BTreeMap, BTreeSet};

use super::{ALL, DEVICE_LABELS, Family, Kind, ROUTER_LABEL, TARGET_LABELS, TARGET_SERIES, find};

/// Label names as a set, for comparing without regard to order.
fn label_set<'a>(labels: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    labels.into_iter().collect()
}

fn table_labels(family: &Family) -> BTreeSet<&'static str> {
    family.labels.iter().copied().collect()
}

// ---------------------------------------------------------------------------------------
// The exposition

/// The label names of one sample line (`name{a="x",b="y"} 1`), and its metric name.
fn parse_sample(line: &str) -> Result<(&str, Vec<&str>), String> {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..end];
    let mut labels = Vec::new();
    let Some(rest) = line[end..].strip_prefix('{') else {
        return Ok((name, labels));
    };
    let mut rest = rest;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            let _ = after;
            return Ok((name, labels));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("a label without `=` in `{line}`"))?;
        labels.push(rest[..eq].trim_start_matches(','));
        let value = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("an unquoted label value in `{line}`"))?;
        // The value ends at the first quote that no backslash escapes.
        let mut escaped = false;
        let mut close = None;
        for (i, c) in value.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let close = close.ok_or_else(|| format!("an unterminated label value in `{line}`"))?;
        rest = value[close + 1..].trim_start_matches(',');
    }
}

/// Problems of an exposition against the table: a family it writes that the table lacks
/// (or with another type or HELP), a family of the table it does not write, and samples
/// whose names or label names are not their family's.
pub fn exposition(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut typed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut helps: BTreeMap<&str, &str> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            typed.insert(name, kind);
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            helps.insert(name, help);
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            match parse_sample(line) {
                Err(e) => problems.push(format!("line {number}: {e}")),
                Ok((name, labels)) => match find(name) {
                    None => problems.push(format!(
                        "line {number}: the sample `{line}` is of no family of the table"
                    )),
                    Some(family) if label_set(labels.iter().copied()) != table_labels(family) => {
                        problems.push(format!(
                            "line {number}: `{name}` has the labels {labels:?}; the table says {:?}",
                            family.labels
                        ));
                    }
                    Some(_) => {}
                },
            }
        }
    }
    for (name, kind) in &typed {
        match find(name) {
            None => problems.push(format!(
                "the exposition writes the family `{name}`, which the table lacks"
            )),
            Some(family) => {
                if Kind::from_name(kind) != Some(family.kind) {
                    problems.push(format!(
                        "`{name}` is a {kind} in the exposition, a {} in the table",
                        family.kind.name()
                    ));
                }
                if helps.get(name) != Some(&family.help) {
                    problems.push(format!(
                        "`{name}` has the HELP {:?} in the exposition, {:?} in the table",
                        helps.get(name),
                        family.help
                    ));
                }
            }
        }
    }
    for family in ALL {
        if !typed.contains_key(family.name) {
            problems.push(format!(
                "the table's family `{}` is not in the exposition",
                family.name
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The README

/// The cells of a Markdown table row, trimmed.
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// The label names a README labels cell names: `device labels` (the medical device's
/// four), a name, or a name with what it means or its values in parentheses.
fn readme_labels(cell: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in cell.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&cell[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&cell[start..]);
    let mut labels = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        if item == "device labels" {
            labels.extend(DEVICE_LABELS);
        } else {
            let end = item.find([' ', '(']).unwrap_or(item.len());
            labels.push(&item[..end]);
        }
    }
    labels
}

/// The backquoted names in a cell.
fn quoted(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Problems of the README's metric tables (every table whose header starts
/// `| metric | type | labels |`) against the table: a family listed that the table
/// lacks, listed twice, or with another type or other labels, and a family of the table
/// that no row lists.
pub fn readme(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut in_table = false;
    let mut tables = 0;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let row = cells(line);
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        if row.len() >= 3 && row[0] == "metric" && row[1] == "type" && row[2] == "labels" {
            in_table = true;
            tables += 1;
            continue;
        }
        if !in_table || row.iter().all(|c| c.chars().all(|c| c == '-' || c == ':')) {
            continue;
        }
        let names = quoted(row[0]);
        let types: Vec<&str> = row.get(1).map_or(Vec::new(), |t| {
            t.split(',').map(str::trim).collect::<Vec<_>>()
        });
        let labels = label_set(readme_labels(row.get(2).copied().unwrap_or_default()));
        if names.is_empty() {
            problems.push(format!("README.md:{number}: a metric row names no metric"));
        }
        if types.len() != 1 && types.len() != names.len() {
            problems.push(format!(
                "README.md:{number}: {} types for {} metrics",
                types.len(),
                names.len()
            ));
        }
        for (i, name) in names.iter().enumerate() {
            if let Some(first) = listed.insert(name, number) {
                problems.push(format!(
                    "README.md:{number}: `{name}` is listed again (first at line {first})"
                ));
            }
            let Some(family) = find(name) else {
                problems.push(format!(
                    "README.md:{number}: `{name}` is not a family of the table"
                ));
                continue;
            };
            let kind = types.get(i).or(types.first()).copied().unwrap_or_default();
            if Kind::from_name(kind) != Some(family.kind) {
                problems.push(format!(
                    "README.md:{number}: `{name}` is listed as a {kind:?}; it is a {}",
                    family.kind.name()
                ));
            }
            if labels != table_labels(family) {
                problems.push(format!(
                    "README.md:{number}: `{name}` is listed with the labels {labels:?}; it has {:?}",
                    family.labels
                ));
            }
        }
    }
    if tables == 0 {
        problems.push("README.md has no `| metric | type | labels |` table".into());
    }
    for family in ALL {
        if !listed.contains_key(family.name) {
            problems.push(format!(
                "README.md: no metric table lists `{}`",
                family.name
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The dashboard

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    /// Numbers, durations, operators, `[range]`s and `$variables`: nothing named.
    Other,
}

fn tokens(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '"' | '\'' | '`' => {
                let quote = c;
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    if chars[i] == '\\' && quote != '`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("an unterminated string".into());
                }
                i += 1;
                out.push(Token::Str);
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
                out.push(Token::Other);
            }
            '{' | '}' | '(' | ')' | ',' => {
                out.push(match c {
                    '{' => Token::LBrace,
                    '}' => Token::RBrace,
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    _ => Token::Comma,
                });
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' || c == '$' => {
                // A number, a duration (5m), or a template variable ($__interval).
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "._".contains(chars[i]))
                {
                    i += 1;
                }
                out.push(Token::Other);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                // An operator: its characters together (`=~`, `!=`, `>=`).
                i += 1;
                while i < chars.len() && "=!~<>".contains(chars[i]) {
                    i += 1;
                }
                out.push(Token::Other);
            }
        }
    }
    Ok(out)
}

/// Keywords that take a list of label names in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Keywords that are neither a function nor a metric.
const KEYWORDS: [&str; 6] = ["bool", "offset", "and", "or", "unless", "atan2"];

/// What a PromQL expression names.
#[derive(Debug, Default)]
struct Names {
    /// Each metric selected, with the label names its selector matches on.
    metrics: Vec<(String, Vec<String>)>,
    /// Label names of `by`, `without`, `on`, `ignoring` and `group_*` clauses.
    grouping: Vec<String>,
    /// The labels of `by` clauses alone: what an aggregation's result keeps.
    by: Option<Vec<String>>,
}

/// The label names of a list in parentheses starting at `tokens[i]` (an LParen); the
/// index after its RParen.
fn label_list(tokens: &[Token], mut i: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    i += 1;
    while i < tokens.len() && tokens[i] != Token::RParen {
        if let Token::Ident(label) = &tokens[i] {
            labels.push(label.clone());
        }
        i += 1;
    }
    (labels, i + 1)
}

fn names(expr: &str) -> Result<Names, String> {
    let tokens = tokens(expr)?;
    let mut names = Names::default();
    let mut i = 0;
    while i < tokens.len() {
        let next_is = |t: Token| tokens.get(i + 1) == Some(&t);
        match &tokens[i] {
            Token::Ident(word)
                if LABEL_LISTS.contains(&word.as_str()) && next_is(Token::LParen) =>
            {
                let (labels, after) = label_list(&tokens, i + 1);
                if word == "by" {
                    names.by.get_or_insert_with(Vec::new).extend(labels.clone());
                }
                names.grouping.extend(labels);
                i = after;
            }
            Token::Ident(word) if KEYWORDS.contains(&word.as_str()) => i += 1,
            // A function or an aggregation (`sum(`, `sum by (..) (`).
            Token::Ident(_)
                if next_is(Token::LParen)
                    || matches!(tokens.get(i + 1), Some(Token::Ident(w)) if w == "by" || w == "without") =>
            {
                i += 1
            }
            Token::Ident(metric) => {
                let mut labels = Vec::new();
                i += 1;
                if tokens.get(i) == Some(&Token::LBrace) {
                    while i < tokens.len() && tokens[i] != Token::RBrace {
                        // A matcher: label, operator, string.
                        if let (Token::Ident(label), Some(Token::Str)) =
                            (&tokens[i], tokens.get(i + 2))
                        {
                            labels.push(label.clone());
                        }
                        i += 1;
                    }
                    i += 1;
                }
                names.metrics.push((metric.clone(), labels));
            }
            Token::LBrace => return Err("a selector without a metric name".into()),
            _ => i += 1,
        }
    }
    Ok(names)
}

/// The label names a query may use on `metric`: a family's own and the target labels,
/// or for one of Prometheus' own series of a target ([`TARGET_SERIES`]) the target labels;
/// `None` for anything else.
fn labels_of(metric: &str) -> Option<(&'static str, Vec<&'static str>)> {
    if let Some(family) = find(metric) {
        let mut labels = family.labels.to_vec();
        labels.extend(TARGET_LABELS);
        return Some((family.name, labels));
    }
    TARGET_SERIES
        .iter()
        .find(|s| **s == metric)
        .map(|s| (*s, TARGET_LABELS.to_vec()))
}

/// Problems of one query: metrics that are no family of the table, and label names
/// (matched, grouped by, or shown in `legend`'s `{{label}}`s) that are not labels of
/// every family the query reads (the target labels, such as `instance`, are labels of
/// every family). (Stricter than PromQL, which allows a label that only some of the
/// operands have; the dashboard's queries each read one family.)
fn query_problems(place: &str, expr: &str, legend: &str, also: &[&str]) -> Vec<String> {
    let names = match names(expr) {
        Ok(names) => names,
        Err(e) => return vec![format!("{place}: `{expr}`: {e}")],
    };
    let mut problems = Vec::new();
    let mut families = Vec::new();
    for (metric, matched) in &names.metrics {
        let Some((name, labels)) = labels_of(metric) else {
            problems.push(format!(
                "{place}: `{expr}` reads `{metric}`, which is not a family of the table"
            ));
            continue;
        };
        for label in matched {
            if !labels.contains(&label.as_str()) {
                problems.push(format!(
                    "{place}: `{expr}` matches on `{label}`, which `{metric}` does not have"
                ));
            }
        }
        families.push((name, labels));
    }
    let legend_labels: Vec<&str> = legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(label, _)| label.trim()))
        .collect();
    let used = names
        .grouping
        .iter()
        .map(String::as_str)
        .chain(legend_labels.iter().copied())
        .chain(also.iter().copied());
    for label in used {
        for (name, labels) in &families {
            if !labels.contains(&label) {
                problems.push(format!(
                    "{place}: `{expr}` uses the label `{label}`, which `{name}` does not have"
                ));
            }
        }
    }
    if let Some(by) = &names.by {
        for label in &legend_labels {
            if !by.iter().any(|b| b == label) {
                problems.push(format!(
                    "{place}: the legend shows `{label}`, which `{expr}` aggregates away"
                ));
            }
        }
    }
    problems
}

/// Problems of a dashboard query that does not filter every series it reads by the
/// Router variable (`instance=~"$instance"`): with several routers in one Prometheus,
/// it would mix them.
fn router_problems(place: &str, expr: &str) -> Vec<String> {
    let Ok(names) = names(expr) else {
        return Vec::new();
    };
    names
        .metrics
        .iter()
        .filter(|(_, matched)| !matched.iter().any(|l| l == ROUTER_LABEL))
        .map(|(metric, _)| {
            format!(
                "{place}: `{expr}` reads `{metric}` without filtering it by the Router \
                 variable ({ROUTER_LABEL}=~\"${ROUTER_LABEL}\")"
            )
        })
        .collect()
}

fn panel_problems(panels: &serde_json::Value, problems: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                let place = format!("panel `{title}`");
                problems.extend(query_problems(&place, expr, legend, &[]));
                problems.extend(router_problems(&place, expr));
            }
        }
        panel_problems(&panel["panels"], problems);
    }
}

/// Problems of a Grafana dashboard (its JSON text) against the table: in every panel's
/// queries (nested panels too) and every `label_values(SELECTOR, LABEL)` variable, each
/// metric must be a family of the table and each label name one it has; and every query
/// and every variable but the Router's own must filter by the Router variable.
pub fn dashboard(json: &str) -> Vec<String> {
    let dashboard: serde_json::Value = match serde_json::from_str(json) {
        Ok(d) => d,
        Err(e) => return vec![format!("the dashboard is not JSON: {e}")],
    };
    let mut problems = Vec::new();
    panel_problems(&dashboard["panels"], &mut problems);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .or(variable["definition"].as_str())
            .unwrap_or_default();
        let Some(inner) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            continue;
        };
        let place = format!("variable `{name}`");
        match inner.rsplit_once(',') {
            Some((selector, label)) => {
                problems.extend(query_problems(&place, selector.trim(), "", &[label.trim()]));
                if label.trim() != ROUTER_LABEL {
                    problems.extend(router_problems(&place, selector.trim()));
                }
            }
            None => problems.push(format!("{place}: `{query}` names no label")),
        }
    }
    let routers = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"] == ROUTER_LABEL)
        .count();
    if routers != 1 {
        problems.push(format!(
            "the dashboard has {routers} variables named `{ROUTER_LABEL}` (the Router); it needs one"
        ));
    }
    problems
}

/// Problems of Prometheus alert rules (the YAML of a rule file) against the table: each
/// alert's expression reads only families of the table (and `up`) and labels they have,
/// and its annotations show (`{{ $labels.NAME }}`) only labels its result keeps.
pub fn alert_rules(yaml: &str) -> Vec<String> {
    let rules: serde_json::Value = match serde_yaml_ng::from_str(yaml) {
        Ok(rules) => rules,
        Err(e) => return vec![format!("the rule file is not YAML: {e}")],
    };
    let mut problems = Vec::new();
    let mut alerts = 0;
    for rule in rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
    {
        let Some(alert) = rule["alert"].as_str() else {
            continue;
        };
        alerts += 1;
        let place = format!("alert `{alert}`");
        let Some(expr) = rule["expr"].as_str() else {
            problems.push(format!("{place} has no expr"));
            continue;
        };
        // `{{ $labels.medical_device }}` reads as a legend's `{{medical_device}}`.
        let shown: String = rule["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, text)| text.as_str())
            .flat_map(|text| text.split("$labels.").skip(1))
            .map(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                format!("{{{{{}}}}}", &rest[..end])
            })
            .collect();
        problems.extend(query_problems(&place, expr, &shown, &[]));
    }
    if alerts == 0 {
        problems.push("the rule file has no alert".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    const DASHBOARD: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dashboards/monitor.json"
    ));

    /// An exposition with one sample of every family, as the table says.
    fn good_exposition() -> String {
        let mut text = String::new();
        for f in ALL {
            let labels: Vec<String> = f.labels.iter().map(|l| format!("{l}=\"x\"")).collect();
            text.push_str(&format!(
                "# HELP {} {}\n# TYPE {} {}\n{}{{{}}} 1\n",
                f.name,
                f.help,
                f.name,
                f.kind.name(),
                f.name,
                labels.join(",")
            ));
        }
        text
    }

    fn assert_one_problem(problems: &[String], naming: &str) {
        assert!(
            problems.len() == 1 && problems[0].contains(naming),
            "expected one problem naming {naming:?}, got {problems:#?}"
        );
    }

    #[test]
    fn sample_lines_are_read_with_escaped_values() {
        let (name, labels) =
            parse_sample(r#"hospmon_x{a="q\"}",b="\\"} 1"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((name, labels), ("hospmon_x", vec!["a", "b"]));
        let (name, labels) = parse_sample("hospmon_y 2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((name, labels.len()), ("hospmon_y", 0));
    }

    #[test]
    fn exposition_check_finds_every_kind_of_mismatch() {
        let good = good_exposition();
        assert_eq!(exposition(&good), Vec::<String>::new());
        // A family the table lacks.
        let extra = format!(
            "{good}# HELP hospmon_new A new one.\n# TYPE hospmon_new gauge\nhospmon_new 1\n"
        );
        let problems = exposition(&extra);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`hospmon_new`, which the table lacks")),
            "{problems:#?}"
        );
        // A family of the table not written.
        let without: String = good
            .lines()
            .filter(|l| !l.contains("hospmon_events_lost_total"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_one_problem(
            &exposition(&without),
            "`hospmon_events_lost_total` is not in the exposition",
        );
        // Another type, another HELP, a label missing, a stray sample.
        let retyped = good.replace("# TYPE hospmon_mode gauge", "# TYPE hospmon_mode counter");
        assert_one_problem(&exposition(&retyped), "`hospmon_mode` is a counter");
        let rehelped = good.replace(MODE_HELP, "Something else.");
        assert_one_problem(&exposition(&rehelped), "`hospmon_mode` has the HELP");
        let relabelled = good.replace(
            "hospmon_frames_total{class=\"x\"}",
            "hospmon_frames_total{klass=\"x\"}",
        );
        assert_one_problem(
            &exposition(&relabelled),
            "`hospmon_frames_total` has the labels [\"klass\"]",
        );
        let stray = format!("{good}hospmon_mode_created 1\n");
        assert_one_problem(&exposition(&stray), "is of no family of the table");
    }

    const MODE_HELP: &str = super::super::MODE.help;

    #[test]
    fn readme_check_finds_every_kind_of_mismatch() {
        assert_eq!(readme(README), Vec::<String>::new(), "the README as it is");
        // A row gone.
        let row = README
            .lines()
            .find(|l| l.starts_with("| `hospmon_unenrolled_addresses`"))
            .unwrap_or_else(|| panic!("the README lists hospmon_unenrolled_addresses"));
        let without = README.replace(&format!("{row}\n"), "");
        assert_one_problem(
            &readme(&without),
            "no metric table lists `hospmon_unenrolled_addresses`",
        );
        // Another type, another label, a name the table lacks.
        let retyped = README.replace(row, &row.replace("| gauge |", "| counter |"));
        assert_one_problem(
            &readme(&retyped),
            "`hospmon_unenrolled_addresses` is listed as a \"counter\"",
        );
        let relabelled = README.replace(row, &row.replace("| gauge | |", "| gauge | direction |"));
        assert_one_problem(
            &readme(&relabelled),
            "`hospmon_unenrolled_addresses` is listed with the labels",
        );
        let renamed = README.replace(
            row,
            &row.replace(
                "hospmon_unenrolled_addresses",
                "hospmon_unenrolled_adresses",
            ),
        );
        let problems = readme(&renamed);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`hospmon_unenrolled_adresses` is not a family")),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("lists `hospmon_unenrolled_addresses`")),
            "{problems:#?}"
        );
        // Device labels are the four.
        let device_row = README
            .lines()
            .find(|l| l.starts_with("| `hospmon_device_dropped_packets_total`"))
            .unwrap_or_else(|| panic!("the README lists hospmon_device_dropped_packets_total"));
        let fewer = README.replace(
            device_row,
            &device_row.replace("device labels", "medical_device, kind, ward"),
        );
        assert_one_problem(
            &readme(&fewer),
            "`hospmon_device_dropped_packets_total` is listed with the labels",
        );
    }

    #[test]
    fn readme_labels_read_names_and_their_explanations() {
        assert_eq!(
            readme_labels("device labels, direction (sent, received)"),
            ["medical_device", "kind", "ward", "criticality", "direction"]
        );
        assert_eq!(
            readme_labels("device (interface), mode"),
            ["device", "mode"]
        );
        assert!(readme_labels("").is_empty());
    }

    #[test]
    fn dashboard_check_finds_every_kind_of_mismatch() {
        assert_eq!(
            dashboard(DASHBOARD),
            Vec::<String>::new(),
            "the dashboard as it is"
        );
        for (from, to, naming) in [
            (
                "hospmon_devices_enrolled",
                "hospmon_devices_enroled",
                "reads `hospmon_devices_enroled`",
            ),
            ("sum by (class)", "sum by (klass)", "klass"),
            (
                "{ward=~\\\"$ward\\\",medical_device",
                "{wards=~\\\"$ward\\\",medical_device",
                "matches on `wards`",
            ),
            ("\"{{outcome}}\"", "\"{{result}}\"", "`result`"),
            (
                "{instance=~\\\"$instance\\\"}, ward)",
                "{instance=~\\\"$instance\\\"}, room)",
                "the label `room`",
            ),
            // Every query and variable filters by the Router.
            (
                "hospmon_devices_enrolled{instance=~\\\"$instance\\\"}",
                "hospmon_devices_enrolled",
                "`hospmon_devices_enrolled` without filtering it by the Router",
            ),
            (
                "label_values(hospmon_device_packets_total{instance=~\\\"$instance\\\"}, ward)",
                "label_values(hospmon_device_packets_total, ward)",
                "variable `ward`: `hospmon_device_packets_total` reads",
            ),
            (
                "\"name\": \"instance\"",
                "\"name\": \"router\"",
                "needs one",
            ),
        ] {
            assert!(DASHBOARD.contains(from), "the dashboard has {from}");
            let changed = DASHBOARD.replacen(from, to, 1);
            let problems = dashboard(&changed);
            assert!(
                !problems.is_empty() && problems.iter().all(|p| p.contains(naming)),
                "{from} -> {to}: expected problems naming {naming:?}, got {problems:#?}"
            );
        }
    }

    #[test]
    fn alert_rules_read_families_up_and_the_labels_they_keep() {
        let rules = |expr: &str, summary: &str| {
            format!(
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: '{expr}'\n        \
                 annotations:\n          summary: '{summary}'\n"
            )
        };
        let good = rules(
            "sum by (instance, medical_device) (increase(hospmon_device_dropped_packets_total[5m])) > 0",
            "{{ $labels.medical_device }} on {{ $labels.instance }}",
        );
        assert_eq!(alert_rules(&good), Vec::<String>::new());
        let up = rules(
            "up{job=\"hospital-monitor\"} == 0",
            "{{ $labels.instance }}",
        );
        assert_eq!(alert_rules(&up), Vec::<String>::new());
        assert_one_problem(
            &alert_rules(&rules("hospmon_device_droped_packets_total > 0", "")),
            "reads `hospmon_device_droped_packets_total`",
        );
        assert_one_problem(
            &alert_rules(&rules(
                "sum by (instance) (hospmon_device_break_glass) > 0",
                "{{ $labels.medical_device }}",
            )),
            "the legend shows `medical_device`, which",
        );
        assert_one_problem(
            &alert_rules(&rules("up{medical_device=\"x\"} == 0", "")),
            "matches on `medical_device`, which `up` does not have",
        );
        assert_one_problem(&alert_rules("groups: []\n"), "no alert");
    }

    #[test]
    fn queries_name_metrics_and_labels_as_promql_does() {
        let n = names(r#"sum by (medical_device) (rate(hospmon_device_bytes_total{ward=~"$ward",medical_device=~"a,b{}"}[$__rate_interval])) > bool 0"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            n.metrics,
            [(
                "hospmon_device_bytes_total".to_string(),
                vec!["ward".to_string(), "medical_device".to_string()]
            )]
        );
        assert_eq!(n.grouping, ["medical_device"]);
        let n = names("max(hospmon_mode) by (mode) == 1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.metrics.len(), 1);
        assert_eq!(n.by, Some(vec!["mode".to_string()]));
        // An aggregation's result keeps only its `by` labels: a legend of another is wrong.
        let problems = query_problems(
            "p",
            "sum by (action) (hospmon_verdict_packets_total)",
            "{{reason}}",
            &[],
        );
        assert_one_problem(&problems, "aggregates away");
        assert!(names(r#"{__name__="hospmon_mode"}"#).is_err());
    }
}
