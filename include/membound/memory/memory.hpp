// SPDX-License-Identifier: MIT
#pragma once
/// @file
/// @brief memory/: test-time-learned associative memory, the ATLAS design space (arXiv 2505.23735)
/// with Titans, DeltaNet, Longhorn and linear attention as special cases.
///  - feature maps phi on keys and queries: identity, elu + 1, polynomial (learnable a_i = 1/i!),
///    truncated exponential (feature_map.hpp);
///  - memory architectures with explicit forward and parameter gradients: matrix, deep MLP, gated
///    MLP (architecture.hpp);
///  - rules: dot product, delta, Omega over a window of c tokens with gates gamma, global
///    (rule.hpp); inner optimisers: GD, momentum, Muon, Longhorn's implicit step (optimizer.hpp);
///  - memory::module, recurrent and chunk-parallel (module.hpp), and the named configurations
///    linear_attention, delta_net, gated_delta_net, longhorn, titans, omega_net, atlas, atlas_pp,
///    deep_transformer, dot (configs.hpp);
///  - memory::layer, the ATLAS layer around a module: projections, short causal convolutions,
///    normalisation, data-dependent gates, output gate and norm, streaming state (layer.hpp).

#include "membound/memory/architecture.hpp"
#include "membound/memory/configs.hpp"
#include "membound/memory/feature_map.hpp"
#include "membound/memory/layer.hpp"
#include "membound/memory/module.hpp"
#include "membound/memory/optimizer.hpp"
#include "membound/memory/rule.hpp"
