//! safetensors state dicts: memory-mapped load, atomic save, exact names.

mod safetensors;
mod state_dict;

pub use self::safetensors::{load_safetensors, save_safetensors};
pub use state_dict::StateDict;
