//! timm's `config.json`, as `timm.models.save_for_hf` writes it and the Hub's `timm/`
//! repositories ship it (`architecture`, `num_classes`, `global_pool`, `model_args`,
//! `pretrained_cfg`, `label_names`), read into a [`BeitConfig`] with the help of the
//! weights' shapes.

use super::timm::SHARED;
use crate::BeitConfig;
use beit_engine::io::StateDict;
use beit_engine::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// timm's registered BEiT models: (name, embed_dim, depth, num_heads, img_size,
/// init_values). All are patch 16, MLP ratio 4, per-layer relative position bias, no
/// absolute positions, q/v biases.
const KNOWN: [(&str, usize, usize, usize, usize, f64); 7] = [
    ("beit_base_patch16_224", 768, 12, 12, 224, 0.1),
    ("beit_base_patch16_384", 768, 12, 12, 384, 0.1),
    ("beit_large_patch16_224", 1024, 24, 16, 224, 1e-5),
    ("beit_large_patch16_384", 1024, 24, 16, 384, 1e-5),
    ("beit_large_patch16_512", 1024, 24, 16, 512, 1e-5),
    ("beitv2_base_patch16_224", 768, 12, 12, 224, 1e-5),
    ("beitv2_large_patch16_224", 1024, 24, 16, 224, 1e-5),
];

/// What a timm config (architecture name, `model_args`, top-level fields) says; `None`
/// where it says nothing and the weights must tell.
#[derive(Default)]
struct Spec {
    img_size: Option<usize>,
    patch_size: Option<usize>,
    in_chans: Option<usize>,
    embed_dim: Option<usize>,
    depth: Option<usize>,
    num_heads: Option<usize>,
    mlp_ratio: Option<f64>,
    init_values: Option<f64>,
    abs_pos: Option<bool>,
    rel_pos: Option<bool>,
    shared_rel_pos: Option<bool>,
    mean_pool: Option<bool>,
    fc_norm: Option<bool>,
    num_classes: Option<usize>,
}

fn bad(file: &str, msg: impl Into<String>) -> Error {
    Error::Format { file: file.to_string(), msg: msg.into() }
}

/// The [`BeitConfig`] of a timm `config.json` (`file`, parsed as `json`) whose weights are
/// `sd` (timm names). The architecture name gives the sizes of timm's registered BEiT
/// models (beit/beitv2, base/large); `model_args` (what `timm.create_model` was given
/// besides the name) overrides them; the tensor shapes give whatever neither says and
/// must agree with what they say. Errors name the file and the field or tensor.
pub(super) fn config_from_timm(json: &Value, sd: &StateDict, file: &str) -> Result<BeitConfig> {
    let arch = json["architecture"].as_str().unwrap_or_default();
    let base = arch.split('.').next().unwrap_or_default();
    let mut spec = match KNOWN.iter().find(|k| k.0 == base) {
        Some(&(_, dim, depth, heads, img, init)) => Spec {
            img_size: Some(img),
            patch_size: Some(16),
            embed_dim: Some(dim),
            depth: Some(depth),
            num_heads: Some(heads),
            mlp_ratio: Some(4.0),
            init_values: Some(init),
            abs_pos: Some(false),
            rel_pos: Some(true),
            shared_rel_pos: Some(false),
            ..Spec::default()
        },
        None if base.starts_with("beit") => Spec::default(),
        None => {
            let known: Vec<&str> = KNOWN.iter().map(|k| k.0).collect();
            let msg = format!("field `architecture`: `{arch}` is not a timm BEiT architecture (known: {})", known.join(", "));
            return Err(bad(file, msg));
        }
    };
    if let Some(args) = json.get("model_args") {
        let args = args.as_object().ok_or_else(|| bad(file, "field `model_args`: expected an object"))?;
        apply_model_args(&mut spec, args, file)?;
    }
    top_level(&mut spec, json, file)?;
    let shapes = Shapes::read(sd, file)?;
    shapes.fill(&mut spec, file)?;
    let unknown = |what: &str, how: &str| {
        bad(file, format!("timm architecture `{arch}` is not one beit-rs knows and {what} cannot be read from the weights ({how})"))
    };
    let heads = spec
        .num_heads
        .ok_or_else(|| unknown("num_heads", "they have no relative position bias table: add \"model_args\": {\"num_heads\": N}"))?;
    let img = match spec.img_size.or_else(|| input_size(json)) {
        Some(s) => s,
        None => return Err(unknown("the image size", "no position table: add \"model_args\": {\"img_size\": N}")),
    };
    let dim = shapes.embed_dim;
    let config = BeitConfig {
        architectures: vec![if shapes.num_classes > 0 { "BeitForImageClassification" } else { "BeitModel" }.into()],
        hidden_size: dim,
        num_hidden_layers: shapes.depth,
        num_attention_heads: heads,
        intermediate_size: shapes.mlp_hidden,
        layer_norm_eps: 1e-6,
        image_size: img,
        patch_size: shapes.patch_size,
        num_channels: shapes.in_chans,
        use_mask_token: false,
        use_absolute_position_embeddings: shapes.abs_pos,
        use_relative_position_bias: shapes.rel_pos,
        use_shared_relative_position_bias: shapes.shared_rel_pos,
        layer_scale_init_value: if shapes.layer_scale { spec.init_values.filter(|v| *v > 0.0).unwrap_or(0.1) } else { 0.0 },
        drop_path_rate: 0.0,
        use_mean_pooling: shapes.mean_pool,
        num_labels: (shapes.num_classes > 0).then_some(shapes.num_classes),
        id2label: labels(json, shapes.num_classes, file)?,
        ..BeitConfig::default()
    };
    config.validate().map_err(|e| bad(file, format!("timm architecture `{arch}`: {e}")))?;
    Ok(config)
}

/// A non-negative integer or a square `[n, n]` pair (timm's `img_size`/`patch_size`).
fn side(v: &Value, field: &str, file: &str) -> Result<usize> {
    let n = |v: &Value| v.as_u64().map(|n| n as usize);
    let got = match v {
        Value::Array(a) if a.len() == 2 && n(&a[0]).is_some() && n(&a[0]) == n(&a[1]) => n(&a[0]),
        Value::Array(_) => return Err(bad(file, format!("field `{field}`: {v} is not square (beit-rs takes square inputs)"))),
        other => n(other),
    };
    got.ok_or_else(|| bad(file, format!("field `{field}`: expected a non-negative integer, got {v}")))
}

fn flag(v: &Value, field: &str, file: &str) -> Result<bool> {
    v.as_bool().ok_or_else(|| bad(file, format!("field `{field}`: expected true or false, got {v}")))
}

fn pool(v: &Value, field: &str, file: &str) -> Result<bool> {
    match v.as_str() {
        Some("avg") => Ok(true),
        Some("token") => Ok(false),
        _ => Err(bad(file, format!("field `{field}`: {v} is not supported (only \"avg\" or \"token\")"))),
    }
}

/// Overrides from `model_args`; options beit-rs has no layers for are errors, training-only
/// ones (drop rates, `head_init_scale`) are ignored.
fn apply_model_args(spec: &mut Spec, args: &Map<String, Value>, file: &str) -> Result<()> {
    for (key, v) in args {
        let field = format!("model_args.{key}");
        let number = || v.as_f64().ok_or_else(|| bad(file, format!("field `{field}`: expected a number, got {v}")));
        match key.as_str() {
            "img_size" => spec.img_size = Some(side(v, &field, file)?),
            "patch_size" => spec.patch_size = Some(side(v, &field, file)?),
            "in_chans" => spec.in_chans = Some(side(v, &field, file)?),
            "embed_dim" => spec.embed_dim = Some(side(v, &field, file)?),
            "depth" => spec.depth = Some(side(v, &field, file)?),
            "num_heads" => spec.num_heads = Some(side(v, &field, file)?),
            "num_classes" => spec.num_classes = Some(side(v, &field, file)?),
            "mlp_ratio" => spec.mlp_ratio = Some(number()?),
            "init_values" => spec.init_values = Some(if v.is_null() { 0.0 } else { number()? }),
            "use_abs_pos_emb" => spec.abs_pos = Some(flag(v, &field, file)?),
            "use_rel_pos_bias" => spec.rel_pos = Some(flag(v, &field, file)?),
            "use_shared_rel_pos_bias" => spec.shared_rel_pos = Some(flag(v, &field, file)?),
            "global_pool" => spec.mean_pool = Some(pool(v, &field, file)?),
            "use_fc_norm" if !v.is_null() => spec.fc_norm = Some(flag(v, &field, file)?),
            "swiglu_mlp" | "scale_mlp" if v.as_bool() == Some(true) => {
                return Err(bad(file, format!("field `{field}`: timm's {key} variant is not supported")))
            }
            "attn_head_dim" if !v.is_null() => {
                return Err(bad(file, format!("field `{field}`: a head width other than embed_dim / num_heads is not supported")))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `num_classes` and `global_pool` at the top level (what `save_for_hf` writes); `model_args`
/// wins where both are given.
fn top_level(spec: &mut Spec, json: &Value, file: &str) -> Result<()> {
    if let (None, Some(v)) = (spec.num_classes, json.get("num_classes")) {
        spec.num_classes = Some(side(v, "num_classes", file)?);
    }
    if let (None, Some(v)) = (spec.mean_pool, json.get("global_pool")) {
        spec.mean_pool = Some(pool(v, "global_pool", file)?);
    }
    Ok(())
}

/// The side of `pretrained_cfg.input_size` (`[channels, height, width]`), when square.
fn input_size(json: &Value) -> Option<usize> {
    let size = json.get("pretrained_cfg")?.get("input_size")?.as_array()?;
    match size.as_slice() {
        [_, h, w] if h == w => h.as_u64().map(|h| h as usize),
        _ => None,
    }
}

/// `id2label` from timm's `label_names` (a list, or a map from class id; at the top level or
/// in `pretrained_cfg`), each name replaced by its `label_descriptions` entry when it has one
/// (ImageNet's synsets → "tench, Tinca tinca").
fn labels(json: &Value, classes: usize, file: &str) -> Result<BTreeMap<String, String>> {
    let find = |key: &str| json.get(key).or_else(|| json.get("pretrained_cfg")?.get(key));
    let Some(names) = find("label_names") else { return Ok(BTreeMap::new()) };
    let entries: Vec<(String, &Value)> = match names {
        Value::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => return Err(bad(file, "field `label_names`: expected a list or a map of strings")),
    };
    let descriptions = find("label_descriptions");
    let mut out = BTreeMap::new();
    for (id, v) in entries {
        let name = v.as_str().ok_or_else(|| bad(file, format!("field `label_names`: entry {id} is not a string")))?;
        if id.parse::<usize>().map_or(true, |i| i >= classes) {
            return Err(bad(file, format!("field `label_names`: id `{id}` is not a class of the {classes} of `head.weight`")));
        }
        let text = descriptions.and_then(|d| d.get(name)?.as_str()).unwrap_or(name);
        out.insert(id, text.to_string());
    }
    if out.len() != classes {
        return Err(bad(file, format!("field `label_names`: {} names for {classes} classes (`head.weight`)", out.len())));
    }
    Ok(out)
}

/// What the weights themselves say about the architecture.
struct Shapes {
    embed_dim: usize,
    in_chans: usize,
    patch_size: usize,
    depth: usize,
    mlp_hidden: usize,
    heads: Option<(usize, &'static str)>,
    grid: Option<(usize, &'static str)>,
    abs_pos: bool,
    rel_pos: bool,
    shared_rel_pos: bool,
    layer_scale: bool,
    mean_pool: bool,
    num_classes: usize,
}

const PATCH: &str = "patch_embed.proj.weight";
const FC1: &str = "blocks.0.mlp.fc1.weight";
const TABLE: &str = "blocks.0.attn.relative_position_bias_table";
const POS: &str = "pos_embed";

impl Shapes {
    fn read(sd: &StateDict, file: &str) -> Result<Self> {
        let shape = |name: &str| sd.shape(name).ok_or_else(|| Error::MissingTensor { file: file.into(), name: name.into() });
        let wrong = |name: &str, got: &[usize], what: &str| bad(file, format!("tensor `{name}` has shape {got:?}, expected {what}"));
        let &[d, c, p, q] = shape(PATCH)? else { return Err(wrong(PATCH, shape(PATCH)?, "[dim, channels, patch, patch]")) };
        if p != q || [d, c, p].contains(&0) {
            return Err(wrong(PATCH, shape(PATCH)?, "non-empty square patches"));
        }
        let depth = sd.names().filter_map(|n| n.strip_prefix("blocks.")?.split('.').next()?.parse::<usize>().ok()).max().map_or(0, |m| m + 1);
        let &[f, _] = shape(FC1)? else { return Err(wrong(FC1, shape(FC1)?, "[hidden, dim]")) };
        let table = |name: &'static str| -> Result<Option<(usize, usize)>> {
            let Some(s) = sd.shape(name) else { return Ok(None) };
            let side = match *s {
                [n, _] if n > 3 => ((n - 3) as f64).sqrt().round() as usize,
                _ => 0,
            };
            if side % 2 == 0 || side * side + 3 != s[0] {
                return Err(wrong(name, s, "[(2·grid − 1)² + 3, heads] (a square patch grid)"));
            }
            Ok(Some((side.div_ceil(2), s[1])))
        };
        let (own, shared) = (table(TABLE)?, table(SHARED)?);
        let mut grid = own.map(|t| (t.0, TABLE)).or(shared.map(|t| (t.0, SHARED)));
        if let Some(s) = sd.shape(POS) {
            let n = s.get(1).map_or(0, |&l| l.saturating_sub(1));
            let g = (n as f64).sqrt().round() as usize;
            if s.len() != 3 || g * g != n || s[2] != d {
                return Err(wrong(POS, s, &format!("[1, grid² + 1, {d}] (a square patch grid)")));
            }
            grid = grid.or(Some((g, POS)));
        }
        let num_classes = match sd.shape("head.weight") {
            Some(&[k, _]) => k,
            Some(s) => return Err(wrong("head.weight", s, "[classes, dim]")),
            None => 0,
        };
        Ok(Shapes {
            embed_dim: d,
            in_chans: c,
            patch_size: p,
            depth,
            mlp_hidden: f,
            heads: own.map(|t| (t.1, TABLE)).or(shared.map(|t| (t.1, SHARED))),
            grid,
            abs_pos: sd.contains(POS),
            rel_pos: own.is_some(),
            shared_rel_pos: shared.is_some(),
            layer_scale: sd.contains("blocks.0.gamma_1"),
            mean_pool: sd.contains("fc_norm.weight"),
            num_classes,
        })
    }

    /// Check what `spec` says against the weights, and fill in what it does not say.
    fn fill(&self, spec: &mut Spec, file: &str) -> Result<()> {
        let clash = |field: &str, said: String, tensor: &str, got: String| {
            bad(file, format!("`architecture`/`model_args` give {field} = {said} but model.safetensors has {got} (`{tensor}`)"))
        };
        let check = |field: &str, said: Option<usize>, got: usize, tensor: &str| match said {
            Some(s) if s != got => Err(clash(field, s.to_string(), tensor, got.to_string())),
            _ => Ok(()),
        };
        check("embed_dim", spec.embed_dim, self.embed_dim, PATCH)?;
        check("in_chans", spec.in_chans, self.in_chans, PATCH)?;
        check("patch_size", spec.patch_size, self.patch_size, PATCH)?;
        check("depth", spec.depth, self.depth, "blocks.*")?;
        check("num_classes", spec.num_classes, self.num_classes, "head.weight")?;
        if let Some(r) = spec.mlp_ratio {
            check("mlp_ratio · embed_dim", Some((self.embed_dim as f64 * r) as usize), self.mlp_hidden, FC1)?;
        }
        if let Some((h, tensor)) = self.heads {
            check("num_heads", spec.num_heads, h, tensor)?;
            spec.num_heads = Some(h);
        }
        if let Some((g, tensor)) = self.grid {
            check("img_size / patch_size", spec.img_size.map(|s| s / self.patch_size), g, tensor)?;
            spec.img_size = Some(g * self.patch_size);
        }
        for (field, said, got, tensor) in [
            ("use_abs_pos_emb", spec.abs_pos, self.abs_pos, POS),
            ("use_rel_pos_bias", spec.rel_pos, self.rel_pos, TABLE),
            ("use_shared_rel_pos_bias", spec.shared_rel_pos, self.shared_rel_pos, SHARED),
            ("use_fc_norm", spec.fc_norm, self.mean_pool, "fc_norm.weight"),
        ] {
            if said.is_some_and(|s| s != got) {
                let has = |b: bool| if b { "it" } else { "no such tensor" }.to_string();
                return Err(clash(field, said.unwrap_or_default().to_string(), tensor, has(got)));
            }
        }
        if spec.mean_pool.is_some_and(|avg| avg != self.mean_pool) {
            let (pool, norm) = if self.mean_pool { ("token", "`fc_norm.weight`") } else { ("avg", "a final `norm.weight`") };
            let msg = format!("global_pool \"{pool}\" with {norm} has no Hugging Face BEiT equivalent (supported: \"avg\" with fc_norm, \"token\" with norm)");
            return Err(bad(file, msg));
        }
        Ok(())
    }
}
