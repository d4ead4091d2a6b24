//! `beit info`: what a model folder holds (the checkpoint is loaded, so this also checks it).

use beit::engine::nn::Module;
use beit::engine::Result;
use beit::Beit;
use std::path::PathBuf;

/// Options of `beit info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Hugging Face model folder (config.json + model.safetensors), or Hub id
    /// (`org/name[@revision]`, fetched into the Hugging Face cache).
    #[arg(long, value_parser = crate::hub::model_dir)]
    model: PathBuf,
    /// Print JSON (`architecture`, `parameters`, `layers`, `hidden_size`, `heads`,
    /// `image_size`, `patch_size`, `relative_position_bias`, `layer_scale`, `pooling`,
    /// `labels`, ...).
    #[arg(long)]
    json: bool,
}

/// Run `beit info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let (model, report) = Beit::from_pretrained(&args.model, &beit::open_device("cpu")?)?;
    let c = model.config();
    let rel_pos = match (c.use_shared_relative_position_bias, c.use_relative_position_bias) {
        (true, true) => "shared + per-layer",
        (true, false) => "shared",
        (false, true) => "per-layer",
        (false, false) => "none",
    };
    let (pooling, labels, vocab) = match &model {
        Beit::MaskedImageModeling(_) => ("none", None, Some(c.vocab_size)),
        Beit::ImageClassification(_) => (if c.use_mean_pooling { "mean" } else { "cls" }, Some(c.num_labels()), None),
        Beit::Model(_) => (if c.use_mean_pooling { "mean" } else { "cls" }, None, None),
    };
    let (gh, gw) = c.grid();
    // In display order; the JSON object has the same keys.
    let fields: Vec<(&str, serde_json::Value)> = vec![
        ("architecture", format!("{:?}", c.architecture()?).into()),
        ("parameters", model.num_params().into()),
        ("layers", c.num_hidden_layers.into()),
        ("hidden_size", c.hidden_size.into()),
        ("heads", c.num_attention_heads.into()),
        ("intermediate_size", c.intermediate_size.into()),
        ("image_size", c.image_size.into()),
        ("patch_size", c.patch_size.into()),
        ("patches", (gh * gw).into()),
        ("num_channels", c.num_channels.into()),
        ("relative_position_bias", rel_pos.into()),
        ("absolute_position_embeddings", c.use_absolute_position_embeddings.into()),
        ("mask_token", c.use_mask_token.into()),
        ("layer_scale", (c.layer_scale_init_value > 0.0).then_some(c.layer_scale_init_value).into()),
        ("pooling", pooling.into()),
        ("mean_pooling", c.use_mean_pooling.into()),
        ("labels", labels.into()),
        ("vocab_size", vocab.into()),
        ("layer_norm_eps", c.layer_norm_eps.into()),
        ("unused_tensors", report.unexpected.clone().into()),
    ];
    if args.json {
        let info: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        println!("{:#}", serde_json::Value::Object(info));
        return Ok(());
    }
    println!("{}", args.model.display());
    for (k, v) in &fields {
        let text = match (*k, v) {
            ("parameters", _) if model.num_params() >= 100_000 => format!("{v} ({:.1}M)", model.num_params() as f64 / 1e6),
            ("layer_scale", serde_json::Value::Null) => "off".into(),
            ("mean_pooling", _) | (_, serde_json::Value::Null) => continue,
            ("unused_tensors", serde_json::Value::Array(a)) if a.is_empty() => continue,
            (_, serde_json::Value::String(s)) => s.clone(),
            _ => v.to_string(),
        };
        println!("  {k:<30} {text}");
    }
    Ok(())
}
