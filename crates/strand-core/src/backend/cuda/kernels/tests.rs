//! Kernel compilation and layout checks (NVRTC, no GPU needed).

use super::*;

/// Without libnvrtc the kernel tests skip visibly, unless
/// `STRAND_REQUIRE_NVRTC` is set (CI sets it: there a kernel that does
/// not compile must fail the build).
fn skip_without_nvrtc(test: &str) -> bool {
    match nvrtc_available() {
        Ok(()) => false,
        Err(e) if std::env::var_os("STRAND_REQUIRE_NVRTC").is_some() => {
            panic!("{test}: STRAND_REQUIRE_NVRTC is set but {e}")
        }
        Err(e) => {
            println!("SKIPPED {test}: {e}");
            true
        }
    }
}

/// Compiles every kernel in both precisions and for the state sizes of
/// the test models, for the oldest and newest architectures we target.
/// Needs only libnvrtc (no GPU); CI installs it. Skips visibly without.
#[test]
fn every_kernel_compiles() {
    if skip_without_nvrtc("every_kernel_compiles") {
        return;
    }
    for bf16 in [false, true] {
        for (n, r, k) in [(16, 16, 4), (4, 3, 2), (8, 1, 4)] {
            let d = Defines {
                wide: bf16,
                ..Defines::new(bf16, n, r, k)
            };
            for arch in ["sm_80", "sm_90"] {
                let cubin = compile(&d.source(), &options(arch))
                    .unwrap_or_else(|e| panic!("{d:?} {arch}: {e}"));
                assert!(cubin.starts_with(b"\x7fELF"), "{arch}: not a cubin");
                let text = String::from_utf8_lossy(&cubin);
                let wide = d.wide.then_some("ssm_scan_wide");
                for name in ENTRY_POINTS.iter().chain(wide.as_ref()) {
                    assert!(text.contains(name), "{arch}: no entry point {name}");
                }
            }
        }
    }
}

/// H100/H200 (227 KB per block, 228 KB per SM) fit the bf16 scan at
/// slice 32 and two wide blocks per SM; A100 (163/164 KB) halves the
/// slice to 16 and so has no wide variant; f32 never has one.
#[test]
fn shared_memory_picks_the_slice_and_the_wide_scan() {
    let bf = Defines::new(true, 16, 16, 4);
    let h100 = bf.fit_shared(232_448, 233_472).unwrap();
    assert_eq!((h100.slice, h100.wide), (32, true));
    assert!(h100.scan_shared_bytes() <= 232_448);
    let a100 = bf.fit_shared(166_912, 167_936).unwrap();
    assert_eq!((a100.slice, a100.wide), (16, false));
    let f32 = Defines::new(false, 16, 16, 4)
        .fit_shared(232_448, 233_472)
        .unwrap();
    assert_eq!((f32.slice, f32.wide), (16, false));
    assert!(bf.fit_shared(20_000, 20_000).is_err());
}

/// The C compiler sizes every params struct as Rust does, asserted
/// inside the kernels' own translation unit (NVRTC has no offsetof, so
/// the size is what is checked: a field added on one side only shows).
#[test]
fn params_match_the_kernels_layout() {
    use std::mem::size_of;
    if skip_without_nvrtc("params_match_the_kernels_layout") {
        return;
    }
    let checks = [
        ("EmbedParams", size_of::<EmbedParams>()),
        ("NormParams", size_of::<NormParams>()),
        ("ConvParams", size_of::<ConvParams>()),
        ("XprojParams", size_of::<XprojParams>()),
        ("ssm_plain::SsmJob", size_of::<SsmJob>()),
        ("ssm_plain::SsmParams", size_of::<SsmParams>()),
        ("RowsParams", size_of::<RowsParams>()),
    ];
    let d = Defines::new(true, 16, 16, 4);
    let mut src = d.source();
    src.push_str(&format!(
        "static_assert(CX_SMEM == {}, \"conv_xproj shared memory\");\n",
        d.xproj_shared_bytes()
    ));
    for (name, size) in checks {
        src.push_str(&format!(
            "static_assert(sizeof({name}) == {size}, \"{name} size\");\n"
        ));
    }
    compile(&src, &options("sm_90")).unwrap();
}
