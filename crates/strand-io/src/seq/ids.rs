//! Checking that record ids are unique.
//!
//! Commands that name outputs after records (e.g. one tensor per record)
//! need unique ids; a repeat must be reported with both record numbers so
//! the user can find the two records.

use std::collections::HashMap;

use crate::error::Error;

/// Remembers the ids seen so far in one file and the record that first
/// used each.
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    file: String,
    seen: HashMap<String, u64>,
}

impl IdSet {
    /// An empty set for ids of `file` (the name used in error messages).
    pub fn new(file: impl Into<String>) -> IdSet {
        IdSet {
            file: file.into(),
            seen: HashMap::new(),
        }
    }

    /// Records `id` as used by the 1-based record number `record`; fails
    /// with [`Error::DuplicateId`] if an earlier record used it.
    pub fn insert(&mut self, id: &str, record: u64) -> Result<(), Error> {
        // Look up before inserting so that the common (unique) case costs a
        // single String allocation and a repeat costs none.
        if let Some(&first) = self.seen.get(id) {
            return Err(Error::DuplicateId {
                file: self.file.clone(),
                id: id.to_owned(),
                first,
                second: record,
            });
        }
        self.seen.insert(id.to_owned(), record);
        Ok(())
    }

    /// Number of distinct ids recorded.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id has been recorded.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Checks that `ids` (in record order, numbered from 1) has no repeats.
pub fn check_unique_ids<'a>(
    file: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), Error> {
    let mut set = IdSet::new(file);
    for (record, id) in (1u64..).zip(ids) {
        set.insert(id, record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_pass() {
        assert!(check_unique_ids("x.fa", ["a", "b", "c"]).is_ok());
        let mut set = IdSet::new("x.fa");
        assert!(set.is_empty());
        set.insert("a", 1).expect("unique");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn repeat_names_both_records() {
        let err = check_unique_ids("x.fa", ["a", "b", "c", "b"]).expect_err("repeat");
        assert_eq!(
            err.to_string(),
            r#"x.fa: record 4 ("b"): duplicate id, first used by record 2"#
        );
        match err {
            Error::DuplicateId { first, second, .. } => assert_eq!((first, second), (2, 4)),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn ids_are_case_sensitive() {
        assert!(check_unique_ids("x.fa", ["chr1", "Chr1"]).is_ok());
    }
}
