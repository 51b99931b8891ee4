//! The README's configuration table against the config structs: for every table it lists, the
//! parser is handed an unknown key there, and its refusal ("expected one of ...", written by serde
//! from the struct's own fields) must name exactly the keys the README lists, and the README must
//! list every table of `config/wxgate.toml`. A key added, renamed or removed in the code without
//! the README, or the other way round, fails here.

use std::collections::BTreeSet;

use wxgate::config::Config;

const README: &str = include_str!("../../README.md");
const EXAMPLE: &str = include_str!("../../config/wxgate.toml");

/// (table as written, e.g. `[[routes]]`, the keys the README lists for it).
fn documented_tables() -> Vec<(String, BTreeSet<String>)> {
    let start = README
        .find("| section | keys (default) |")
        .expect("the README's configuration table");
    README[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').splitn(2, " | ").collect();
            let table = cells[0].trim().trim_matches('`').to_string();
            (table, documented_keys(cells[1]))
        })
        .collect()
}

/// The backticked names in a keys cell, outside parentheses (which hold defaults and values).
fn documented_keys(cell: &str) -> BTreeSet<String> {
    let mut outside = String::new();
    let mut depth = 0;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The keys the parser accepts in `table`, read from its refusal of an unknown key.
fn accepted_keys(table: &str) -> BTreeSet<String> {
    let mut document: toml::Table = toml::from_str(
        "[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n[jwt]\nsecret = \"a-secret-of-more-than-32-bytes-long\"\n",
    )
    .unwrap();
    let is_array = table.starts_with("[[");
    let path: Vec<&str> = table.trim_matches(['[', ']']).split('.').collect();
    let mut probe = toml::Table::new();
    probe.insert("zz_not_a_key".into(), toml::Value::Integer(1));
    let mut at = &mut document;
    for (index, part) in path.iter().enumerate() {
        let part = if *part == "NAME" { "probe" } else { part };
        if index + 1 == path.len() {
            let value = if is_array {
                toml::Value::Array(vec![toml::Value::Table(probe.clone())])
            } else {
                toml::Value::Table(probe.clone())
            };
            match at.get_mut(part) {
                Some(toml::Value::Table(existing)) => {
                    existing.insert("zz_not_a_key".into(), toml::Value::Integer(1));
                }
                _ => {
                    at.insert(part.to_string(), value);
                }
            }
            break;
        }
        at = match at
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => inner,
            toml::Value::Array(items) => match items.last_mut() {
                Some(toml::Value::Table(inner)) => inner,
                _ => panic!("{table}"),
            },
            _ => panic!("{table}"),
        };
    }
    let text = toml::to_string(&document).unwrap();
    let error = Config::from_toml(&text, std::iter::empty())
        .expect_err(&format!("{table} with an unknown key must be refused"))
        .to_string();
    // "...unknown field `zz_not_a_key`, expected one of `a`, `b`\nin `table`": the first line.
    let expected = error
        .split_once("expected ")
        .unwrap_or_else(|| panic!("{table}: no list of keys in {error:?}"))
        .1
        .lines()
        .next()
        .unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Catches a config key added, renamed or removed without the README's table following.
#[test]
fn the_readme_table_lists_exactly_the_keys_the_parser_accepts() {
    let tables = documented_tables();
    assert!(tables.len() >= 15, "{tables:?}");
    let names: BTreeSet<String> = tables.iter().map(|(table, _)| table.clone()).collect();
    for (table, documented) in &tables {
        let accepted = accepted_keys(table);
        let prefix = table.trim_matches(['[', ']']);
        // A member that is a table of its own is documented by its own row.
        let own_rows: BTreeSet<String> = accepted
            .iter()
            .filter(|key| {
                ["[{p}.{k}]", "[[{p}.{k}]]", "[{p}.{k}.NAME]"]
                    .iter()
                    .any(|shape| names.contains(&shape.replace("{p}", prefix).replace("{k}", key)))
            })
            .cloned()
            .collect();
        let expected: BTreeSet<String> = accepted.difference(&own_rows).cloned().collect();
        assert_eq!(
            documented, &expected,
            "README row {table} (left) differs from the parser's keys (right)"
        );
    }
    // Every top-level table the parser knows has its row.
    let root = "zz_not_a_key = 1\n[wechat]\nappid = \"wx1\"\nsecret = \"s\"\n";
    let error = Config::from_toml(root, std::iter::empty())
        .expect_err("an unknown top-level key is refused")
        .to_string();
    let sections = error.split_once("expected ").expect("a list of sections").1;
    let sections = sections.lines().next().unwrap_or_default();
    for section in sections.split('`').skip(1).step_by(2) {
        let rows = [
            format!("[{section}]"),
            format!("[[{section}]]"),
            format!("[{section}.NAME]"),
        ];
        assert!(
            rows.iter().any(|row| names.contains(row)),
            "the config's [{section}] has no README row"
        );
    }
    // Every table the commented example config uses has its row.
    for line in EXAMPLE.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') && line.ends_with(']') && !line.contains(' ') {
            // The segment after `apps` is an app's name.
            let brackets = if line.starts_with("[[") { 2 } else { 1 };
            let inner = &line[brackets..line.len() - brackets];
            let mut parts: Vec<&str> = inner.split('.').collect();
            if let Some(at) = parts.iter().position(|part| *part == "apps") {
                if at + 1 < parts.len() {
                    parts[at + 1] = "NAME";
                }
            }
            let (open, close) = if brackets == 2 {
                ("[[", "]]")
            } else {
                ("[", "]")
            };
            let table = format!("{open}{}{close}", parts.join("."));
            assert!(
                names.contains(&table),
                "config/wxgate.toml's {line} has no README row"
            );
        }
    }
}
