//! Where a record's class label comes from: a two-column TSV
//! (`name<TAB>label`), or `label=VALUE` in its FASTA/FASTQ header.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use strand_io::Record;

/// The labels of a run.
pub enum Labels {
    /// From `--labels FILE`: record id -> label.
    Table {
        file: PathBuf,
        map: HashMap<String, String>,
    },
    /// From `label=` in each header's description.
    Headers,
}

impl Labels {
    /// `--labels FILE` if given, else header labels.
    pub fn open(file: Option<&Path>) -> Result<Labels> {
        let Some(file) = file else {
            return Ok(Labels::Headers);
        };
        let text =
            std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
        Ok(Labels::Table {
            map: parse_table(&text, &file.display().to_string())?,
            file: file.to_path_buf(),
        })
    }

    /// The label of `rec`, or why there is none (a message to follow the
    /// record's position).
    pub fn of(&self, rec: &Record) -> Result<String, String> {
        match self {
            Labels::Table { file, map } => map
                .get(&rec.id)
                .cloned()
                .ok_or_else(|| format!("no label in {}", file.display())),
            Labels::Headers => header_label(rec.description.as_deref())?.ok_or_else(|| {
                "no label: the header has no label= field (or give --labels FILE)".to_string()
            }),
        }
    }
}

/// `label=VALUE` among the whitespace-separated words of a description.
fn header_label(description: Option<&str>) -> Result<Option<String>, String> {
    let mut found: Option<&str> = None;
    for word in description.unwrap_or("").split_whitespace() {
        if let Some(v) = word.strip_prefix("label=") {
            if v.is_empty() {
                return Err("empty label= in the header".into());
            }
            if found.is_some_and(|f| f != v) {
                return Err(format!(
                    "two different label= fields in the header (\"{}\", \"{v}\")",
                    found.unwrap_or_default()
                ));
            }
            found = Some(v);
        }
    }
    Ok(found.map(str::to_string))
}

/// Parses `name<TAB>label` lines. Blank lines and `#` comments are
/// skipped, and so is a first line reading exactly `name<TAB>label` (a
/// header). Exactly two fields per line, each name once.
fn parse_table(bytes: &[u8], file: &str) -> Result<HashMap<String, String>> {
    let text = std::str::from_utf8(bytes).with_context(|| format!("{file}: not UTF-8 text"))?;
    let mut map = HashMap::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') || (n == 1 && line == "name\tlabel") {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, label] = fields[..] else {
            bail!(
                "{file}: line {n}: expected 2 tab-separated fields (name, label), found {}",
                fields.len()
            );
        };
        let (name, label) = (name.trim(), label.trim());
        if name.is_empty() || label.is_empty() {
            bail!("{file}: line {n}: empty name or label");
        }
        if let Some(first) = first_line.insert(name.to_string(), n) {
            bail!("{file}: line {n}: \"{name}\" is already labelled on line {first}");
        }
        map.insert(name.to_string(), label.to_string());
    }
    if map.is_empty() {
        bail!("{file}: no labels");
    }
    Ok(map)
}

/// The distinct labels in the order their ids get: numeric order when
/// every label is an integer (`2` before `10`), else byte order.
pub fn ordered(labels: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = labels.into_iter().collect();
    v.sort();
    v.dedup();
    if v.iter().all(|l| l.parse::<i64>().is_ok()) {
        v.sort_by_key(|l| l.parse::<i64>().expect("checked above"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, desc: Option<&str>) -> Record {
        Record {
            id: id.into(),
            description: desc.map(Into::into),
            seq: b"ACGT".to_vec(),
        }
    }

    #[test]
    fn table_parsing() {
        let map = parse_table(b"name\tlabel\n# c\na\tx\r\n\nb\t y \n", "l.tsv").unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["b"], "y");
        let e = parse_table(b"a\tx\tz\n", "l.tsv").unwrap_err().to_string();
        assert_eq!(
            e,
            "l.tsv: line 1: expected 2 tab-separated fields (name, label), found 3"
        );
        let e = parse_table(b"a\tx\nb\ty\na\tz\n", "l.tsv")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "l.tsv: line 3: \"a\" is already labelled on line 1");
        assert!(parse_table(b"# only a comment\n", "l.tsv").is_err());
    }

    #[test]
    fn header_labels() {
        let l = Labels::Headers;
        assert_eq!(
            l.of(&rec("r", Some("len=3 label=promoter"))).unwrap(),
            "promoter"
        );
        assert!(l
            .of(&rec("r", None))
            .unwrap_err()
            .contains("no label= field"));
        assert!(l
            .of(&rec("r", Some("label=a label=b")))
            .unwrap_err()
            .contains("two different"));
        assert_eq!(l.of(&rec("r", Some("label=a label=a"))).unwrap(), "a");
        assert!(l.of(&rec("r", Some("label="))).is_err());
    }

    #[test]
    fn label_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(ordered(s(&["10", "2", "2", "-1"])), s(&["-1", "2", "10"]));
        assert_eq!(ordered(s(&["b", "a", "B"])), s(&["B", "a", "b"]));
    }
}
