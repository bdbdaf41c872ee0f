// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief vision/: EfficientViT (Liu et al., CVPR 2023): cascaded group attention, local window
/// attention, the EfficientViT-M0..M5 classifiers with timm-compatible weights, and timm's eval
/// preprocessing of PNG/JPEG images (`vision/preprocess.hpp`, not included here: it needs libstb).

#include "membound/vision/cascaded_group_attention.hpp"
#include "membound/vision/efficientvit.hpp"
#include "membound/vision/efficientvit_config.hpp"
#include "membound/vision/local_window_attention.hpp"
#include "membound/vision/state_dict.hpp"
