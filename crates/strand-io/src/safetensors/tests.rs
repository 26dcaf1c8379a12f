//! Tests of the safetensors writer, reading files back with the reference
//! `safetensors` crate.

use std::collections::BTreeMap;

use ::safetensors::{Dtype as StDtype, SafeTensors};

use super::*;

fn meta() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("model".to_owned(), "ph-tiny".to_owned()),
        ("strand_version".to_owned(), "0.1.0".to_owned()),
    ])
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

use crate::test_util::names_in as files_in;

#[test]
fn round_trip_with_reference_reader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.safetensors");
    let mut w = Writer::create(&path, meta()).expect("create");
    let big: Vec<f32> = (0..100_000).map(|i| i as f32 * 0.5 - 7.25).collect();
    // Insertion order deliberately not alphabetical.
    w.add_f32(
        "zeta.embed",
        &[2, 3],
        &[1.0, -2.0, 3.5, f32::MIN, f32::MAX, 0.0],
    )
    .expect("add");
    w.add_f32("alpha \"quoted\"", &[100_000], &big)
        .expect("add");
    w.add_f32("scalar", &[], &[42.0]).expect("add");
    w.add_f32("empty", &[0, 4], &[]).expect("add");
    assert_eq!(w.len(), 4);
    w.finish().expect("finish");
    assert_eq!(files_in(dir.path()), vec!["out.safetensors"]);

    let bytes = std::fs::read(&path).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let (header_len, info) = SafeTensors::read_metadata(&bytes).expect("valid header");
    assert_eq!(header_len % 8, 0);
    assert_eq!(
        info.offset_keys(),
        vec!["zeta.embed", "alpha \"quoted\"", "scalar", "empty"]
    );
    let expected_meta: std::collections::HashMap<String, String> = meta().into_iter().collect();
    assert_eq!(info.metadata().as_ref(), Some(&expected_meta));

    let t = st.tensor("zeta.embed").expect("present");
    assert_eq!(t.dtype(), StDtype::F32);
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(
        f32s(t.data()),
        vec![1.0, -2.0, 3.5, f32::MIN, f32::MAX, 0.0]
    );
    let t = st.tensor("alpha \"quoted\"").expect("present");
    assert_eq!(f32s(t.data()), big);
    let t = st.tensor("scalar").expect("present");
    assert_eq!(t.shape(), &[] as &[usize]);
    assert_eq!(f32s(t.data()), vec![42.0]);
    let t = st.tensor("empty").expect("present");
    assert_eq!(t.shape(), &[0, 4]);
    assert!(t.data().is_empty());
}

#[test]
fn header_layout_is_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.safetensors");
    let mut w = Writer::create(&path, BTreeMap::from([("k".into(), "v".into())])).expect("create");
    w.add_f32("b", &[1], &[1.0]).expect("add");
    w.add_f32("a", &[2], &[2.0, 3.0]).expect("add");
    w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).expect("utf-8");
    let json = concat!(
        r#"{"__metadata__":{"k":"v"},"#,
        r#""b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#,
        r#""a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    );
    assert_eq!(header.trim_end_matches(' '), json);
    // Padded to fill the room reserved before the data.
    assert_eq!(n as u64, INITIAL_RESERVE - 8);
    assert_eq!(f32s(&bytes[8 + n..]), vec![1.0, 2.0, 3.0]);
}

#[test]
fn no_metadata_and_no_tensors_is_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("e.safetensors");
    let w = Writer::create(&path, BTreeMap::new()).expect("create");
    assert!(w.is_empty());
    w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("valid");
    assert!(st.names().is_empty());
    assert_eq!(&bytes[8..10], b"{}");
}

#[test]
fn bad_tensors_are_rejected_without_harm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.safetensors");
    let mut w = Writer::create(&path, BTreeMap::new()).expect("create");
    w.add_f32("a", &[2], &[1.0, 2.0]).expect("add");
    let e = w.add_f32("a", &[1], &[3.0]).expect_err("duplicate");
    assert_eq!(
        e.to_string(),
        format!(r#"{}: tensor "a": duplicate tensor name"#, path.display())
    );
    let e = w
        .add_f32("b", &[2, 3], &[1.0; 5])
        .expect_err("wrong length");
    assert!(
        e.to_string()
            .ends_with(r#"tensor "b": shape [2, 3] needs 6 values, got 5"#),
        "{e}"
    );
    let e = w.add_f32("c", &[usize::MAX, 2], &[]).expect_err("overflow");
    assert!(e.to_string().contains("is too large"), "{e}");
    let e = w
        .add_f32("__metadata__", &[1], &[1.0])
        .expect_err("reserved");
    assert!(e.to_string().contains("reserved"), "{e}");
    // The writer is still usable and the file valid.
    w.add_f32("d", &[1], &[4.0]).expect("add");
    w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("valid");
    assert_eq!(f32s(st.tensor("d").expect("present").data()), vec![4.0]);
}

#[test]
fn drop_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.safetensors");
    let mut w = Writer::create(&path, meta()).expect("create");
    w.add_f32("a", &[1000], &[1.0; 1000]).expect("add");
    drop(w);
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn stdout_destination_spools_and_streams() {
    // Writing to the real stdout would garble the test output, so drive
    // the stdout-mode writer's body into a buffer instead.
    let mut w = Writer::create(Path::new("-"), meta()).expect("create");
    assert_eq!(w.display_name(), "<stdout>");
    w.add_f32("x", &[3], &[1.0, 2.0, 3.0]).expect("add");
    let mut buf = Vec::new();
    w.body.write_to(&mut buf).expect("write");
    let st = SafeTensors::deserialize(&buf).expect("valid");
    assert_eq!(
        f32s(st.tensor("x").expect("present").data()),
        vec![1.0, 2.0, 3.0]
    );
}

#[test]
fn oversized_header_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.safetensors");
    let huge = "m".repeat(MAX_HEADER_BYTES);
    let w = Writer::create(&path, BTreeMap::from([("k".into(), huge)])).expect("create");
    let e = w.finish().expect_err("too large");
    assert!(e.to_string().contains("limit readers accept"), "{e}");
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn header_limit_is_checked_when_tensors_arrive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.safetensors");
    // Leaves room for the metadata but not for one more tensor entry.
    let filler = "m".repeat(MAX_HEADER_BYTES - 40);
    let mut w = Writer::create(&path, BTreeMap::from([("k".into(), filler)])).expect("create");
    let e = w.add_f32("x", &[1], &[1.0]).expect_err("too large");
    assert!(matches!(e, Error::Tensor { .. }), "{e:?}");
    assert!(e.to_string().contains("write fewer, larger tensors"), "{e}");
    // Nothing was spooled for the refused tensor.
    assert_eq!(w.body.offset, 0);
}

#[test]
fn streamed_tensors_in_narrow_dtypes_read_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.safetensors");
    let mut w = Writer::create(&path, meta()).expect("create");
    let values: Vec<f32> = (0..12).map(|i| i as f32 - 3.5).collect();
    w.begin_tensor("bf", Dtype::Bf16, &[3, 4]).expect("begin");
    w.write(&values[..5]).expect("write");
    w.write(&values[5..]).expect("write");
    w.end_tensor().expect("end");
    w.add("half", Dtype::F16, &[12], &values).expect("add");
    // Metadata may arrive after the tensors it describes.
    w.set_metadata("coords.bf".into(), "{\"start\":0}".into())
        .expect("metadata");
    w.finish().expect("finish");

    let bytes = std::fs::read(&path).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let bf = st.tensor("bf").expect("bf");
    assert_eq!(bf.dtype(), StDtype::BF16);
    assert_eq!(bf.shape(), &[3, 4]);
    let back: Vec<f32> = bf
        .data()
        .chunks_exact(2)
        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    // Every value here is exact in bf16 and f16.
    assert_eq!(back, values);
    let h = st.tensor("half").expect("half");
    assert_eq!(h.dtype(), StDtype::F16);
    let (_, info) = SafeTensors::read_metadata(&bytes).expect("header");
    let m = info.metadata().clone().expect("metadata");
    assert_eq!(m["coords.bf"], "{\"start\":0}");
    assert_eq!(m["model"], "ph-tiny");
}

#[test]
fn a_short_or_long_streamed_tensor_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.safetensors");
    let mut w = Writer::create(&path, meta()).expect("create");
    w.begin_tensor("t", Dtype::F32, &[2, 2]).expect("begin");
    let e = w.write(&[0.0; 5]).expect_err("too many");
    assert!(
        e.to_string().contains("5 values written, 4 expected"),
        "{e}"
    );
    w.write(&[0.0; 3]).expect("write");
    let e = w.end_tensor().expect_err("one missing");
    assert!(e.to_string().contains("1 values missing"), "{e}");
    assert!(w.finish().is_err());
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn header_length_estimate_matches_the_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = Writer::create(&dir.path().join("h.safetensors"), meta()).expect("create");
    w.set_metadata("quote\"d".into(), "v\n".into())
        .expect("metadata");
    w.set_metadata("model".into(), "a longer model name".into())
        .expect("replace");
    w.add_f32("x", &[1], &[1.0]).expect("add");
    let rendered = w.body.header().expect("header");
    assert_eq!(rendered.trim_end().len(), w.body.header_len());
}

/// Issue 15: a file output holds its data in place as it is written (no
/// second copy), and the header room grows, moving the data, as needed.
#[test]
fn issue15_data_is_written_in_place_and_the_header_room_grows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.safetensors");
    let mut w = Writer::create(&path, meta()).expect("create");
    let values: Vec<f32> = (0..250_000).map(|i| i as f32).collect();
    w.add_f32("first", &[values.len()], &values).expect("add");
    w.out.flush().expect("flush");
    // The only file is our temporary output, already holding the data.
    let names = files_in(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    let temp_len = std::fs::metadata(dir.path().join(&names[0]))
        .expect("stat")
        .len();
    assert_eq!(temp_len, INITIAL_RESERVE + 4 * values.len() as u64);
    // Enough long names to outgrow the room several times.
    let name = |i: usize| format!("{i:05}-{}", "n".repeat(200));
    for i in 0..200 {
        w.add_f32(&name(i), &[2], &[i as f32, -(i as f32)])
            .expect("add");
    }
    assert!(w.body.reserved > 8 * INITIAL_RESERVE, "{}", w.body.reserved);
    w.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("valid");
    assert_eq!(f32s(st.tensor("first").expect("first").data()), values);
    for i in 0..200 {
        let t = st.tensor(&name(i)).expect("present");
        assert_eq!(f32s(t.data()), vec![i as f32, -(i as f32)]);
    }
    // The same tensors through a stream destination give the same bytes.
    let mut s = Writer::create(Path::new("-"), meta()).expect("stdout");
    s.add_f32("first", &[values.len()], &values).expect("add");
    for i in 0..200 {
        s.add_f32(&name(i), &[2], &[i as f32, -(i as f32)])
            .expect("add");
    }
    let header = s.body.header_len();
    reserve(&mut s.out, &mut s.body, header).expect("reserve");
    let mut streamed = Vec::new();
    s.body.write_to(&mut streamed).expect("write");
    assert!(streamed == bytes, "stream and file outputs differ");
}

#[test]
fn metadata_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.safetensors");
    let mut w = Writer::create(&path, meta()).expect("create");
    w.add_f32("x", &[1], &[1.0]).expect("add");
    w.finish().expect("finish");
    assert_eq!(read_metadata(&path).expect("read"), meta());
    std::fs::write(&path, b"not safetensors").expect("write");
    assert!(read_metadata(&path).is_err());
}
