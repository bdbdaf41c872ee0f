// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief Floor 2 aggregate for file formats: the safetensors reader and writer
/// (`io::safetensors`, `io::safetensors_writer`) and sharded checkpoints
/// (`io::sharded_safetensors`, Hugging Face `model.safetensors.index.json`), and the Hugging Face
/// model-folder configs (`io::load_model_config`, `io::load_generation_config`).

#include "membound/io/hf_config.hpp"
#include "membound/io/json.hpp"
#include "membound/io/safetensors.hpp"
#include "membound/io/safetensors_index.hpp"
