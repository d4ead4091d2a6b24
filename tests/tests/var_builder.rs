//! A module's parameters are what its constructor created through the [`VarBuilder`]
//! (nothing can be left out of saving, loading or training), and a strict load names every
//! missing and unexpected tensor at once.

use beit_backend_cpu::cpu;
use beit_engine::nn::{load_params, BatchNorm2d, Init, Linear, Module, Param, VarBuilder};
use beit_engine::{DType, Error, Result};

/// A composite that forgets nothing: a Linear, a BatchNorm (with buffers), a loose
/// parameter and a pre-packed Linear weight, all taken from the builder's record.
struct Head {
    params: Vec<Param>,
}

impl Head {
    fn new(vb: &VarBuilder) -> Result<Self> {
        let mark = vb.mark();
        Linear::new(&vb.pp("proj"), 4, 3, true)?;
        BatchNorm2d::new(&vb.pp("bn"), 3)?;
        vb.param("gamma", &[3], Init::Const(0.1))?;
        Linear::new(&vb.clone().with_packed_weights(true).pp("packed"), 3, 2, false)?;
        Ok(Head { params: vb.created_since(mark) })
    }
}

impl Module for Head {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

#[test]
fn a_module_owns_what_its_constructor_created() -> Result<()> {
    let vb = VarBuilder::new(&cpu(), DType::F32, 0);
    vb.param("before", &[1], Init::Const(0.0))?;
    let head = Head::new(&vb.pp("head"))?;
    vb.param("after", &[1], Init::Const(0.0))?;
    let names: Vec<&str> = head.params.iter().map(Param::name).collect();
    let want = [
        "head.proj.weight",
        "head.proj.bias",
        "head.bn.weight",
        "head.bn.bias",
        "head.bn.running_mean",
        "head.bn.running_var",
        "head.bn.num_batches_tracked",
        "head.gamma",
        "head.packed.weight",
    ];
    assert_eq!(names, want, "in creation order, siblings created before and after left out");
    assert_eq!(head.trainable_params().len(), 6, "buffers are recorded but not trained");
    // The packed weight recorded is the one the Linear holds (it reads back unpacked).
    assert_eq!(head.params[8].tensor().shape(), [2, 3]);
    assert_eq!(vb.created_since(0).len(), want.len() + 2);
    Ok(())
}

#[test]
fn strict_loading_names_every_missing_and_unexpected_tensor() -> Result<()> {
    let head = Head::new(&VarBuilder::new(&cpu(), DType::F32, 0))?;
    let mut sd = head.state_dict().map_names(|n| (n != "proj.bias" && n != "gamma").then(|| n.to_string()))?;
    sd.insert("extra.weight", head.params[0].tensor());
    let err = load_params(&head.params(), &sd, true).unwrap_err();
    match &err {
        Error::StateDictMismatch { missing, unexpected, .. } => assert_eq!((missing.as_slice(), unexpected.as_slice()), (&["proj.bias".to_string(), "gamma".to_string()][..], &["extra.weight".to_string()][..])),
        _ => panic!("{err}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("missing 2 tensors: `proj.bias`, `gamma`;") && msg.contains("unexpected 1 tensor: `extra.weight`;"), "{msg}");
    // Non-strict: the same lists in the report, and `require` keeps the needed ones.
    let report = load_params(&head.params(), &sd, false)?;
    assert_eq!((report.missing.len(), report.unexpected.len()), (2, 1));
    let err = report.require("weights.safetensors", |n| n == "gamma").unwrap_err().to_string();
    assert!(err.starts_with("weights.safetensors:") && err.contains("missing 1 tensor: `proj.bias`;") && !err.contains("gamma"), "{err}");
    report.require("weights.safetensors", |n| n == "gamma" || n == "proj.bias")
}
