//! `beit`: the beit-rs command-line tool.

mod bench;
mod classify;
mod demo;
mod eval;
mod export;
mod finetune;
mod forward;
mod hub;
mod info;
mod init;
mod mask;
mod precision;
mod pretrain;
mod progress;
mod segment;
mod segmentation;
mod tokenize;
mod tokenizer;
mod train_args;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "beit", version, about = "BEiT in Rust: train on a GPU, run on a CPU, no Python.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: tokenizer, MIM pretraining and fine-tuning vs scratch on the built-in digits.
    Demo(demo::DemoArgs),
    /// Run a Hugging Face BEiT folder on tensors from a safetensors file; write its outputs.
    Forward(forward::ForwardArgs),
    /// Top-5 labels of images (Hugging Face preprocessing).
    Classify(classify::ClassifyArgs),
    /// Architecture, parameter count and configuration of a model folder.
    Info(info::InfoArgs),
    /// Forward latency and peak memory on random input.
    Bench(bench::BenchArgs),
    /// Write a freshly initialised model folder.
    Init(init::InitArgs),
    /// Draw a blockwise mask over an image, or print mask statistics.
    Mask(mask::MaskArgs),
    /// Per-pixel classes of an image as a colour overlay with a legend (segmentation model).
    Segment(segment::SegmentArgs),
    /// Token ids of a visual tokenizer (DALL-E dVAE encoder), from tensors or as a picture.
    Tokenize(tokenize::TokenizeArgs),
    /// Train a visual tokenizer (dVAE) on the built-in digits or an image folder.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCommand),
    /// Masked image modeling pretraining (BEiT's recipe), with checkpoints and resume.
    Pretrain(Box<pretrain::PretrainArgs>),
    /// Fine-tune a pretrained model for image classification.
    Finetune(Box<finetune::FinetuneArgs>),
    /// Top-1/top-5 accuracy and confusion matrix of a classifier.
    Eval(eval::EvalArgs),
    /// Write a training checkpoint's model as a Hugging Face folder.
    Export(export::ExportArgs),
}

/// Print what the libraries log (through `tracing`) to stderr: warnings and errors, or the
/// level `BEIT_LOG` names (`error`, `warn`, `info`, `debug`, `trace`, `off`).
fn init_logging() {
    let level = std::env::var("BEIT_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    let log = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_target(false).without_time().with_ansi(false);
    // Only a second initialisation fails, and then the first one's logging stands.
    let _ = log.try_init();
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Forward(args) => forward::run(&args),
        Command::Classify(args) => classify::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Mask(args) => mask::run(&args),
        Command::Segment(args) => segment::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Tokenizer(cmd) => tokenizer::run(&cmd),
        Command::Pretrain(args) => pretrain::run(&args),
        Command::Finetune(args) => finetune::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Export(args) => export::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
