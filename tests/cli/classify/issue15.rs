//! Issue 15, `strand-classify`: outputs that are inputs.

use crate::util::{dir_entries, tempdir};

use super::{classify, model};

/// `predict -o in.fa in.fa` and `eval -o data.fa --data data.fa` are
/// refused before any work; the input is untouched.
#[test]
fn issue15_output_equal_to_the_input_is_refused() {
    let dir = tempdir();
    let input = dir.path().join("in.fa");
    let text = ">a label=x\nACGTACGT\n>b label=y\nTTTTGGGG\n";
    std::fs::write(&input, text).expect("write");
    let path = input.to_string_lossy().into_owned();
    let m = model("ps-tiny-cls");
    let runs = [
        classify("predict").args(["-q", "-m", &m, "-o", &path, &path]),
        classify("eval").args(["-q", "-m", &m, "--data", &path, "-o", &path]),
        classify("eval").args(["-q", "-m", &m, "--data", &path, "--plot", &path]),
    ];
    for cmd in runs {
        let res = cmd.run().exits(1);
        assert!(
            res.stderr.contains("is the same file as input"),
            "{}",
            res.stderr
        );
        assert_eq!(res.stderr.lines().count(), 1, "{}", res.stderr);
    }
    assert_eq!(std::fs::read_to_string(&input).expect("read"), text);
    assert_eq!(dir_entries(dir.path()), vec!["in.fa"]);
}
