// The unary ops' functions: the fused elementwise kernel (src/kernels/elementwise.rs) includes
// them in every kernel it generates (a lone Unary layer runs as a program of one step).
//
// Keep the op codes in sync with `UnaryOp::encode` in src/kernels/unary.rs.
// BEGIN FUNCTIONS: what src/kernels/elementwise.rs includes.

// Abramowitz and Stegun 7.1.26: |error| <= 1.5e-7.
fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-x * x));
}

// log(1 + exp(x)) without overflow.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
}

// The op `op` (see `UnaryOp::encode`) of `x`, with its parameters.
fn unary_op(op: u32, x: f32, alpha: f32, beta: f32, gamma: f32) -> f32 {
    switch op {
        case 0u: { return select(x * alpha, x, x >= 0.0); }
        case 1u: { return clamp(x, alpha, beta); }
        case 2u: { return 1.0 / (1.0 + exp(-x)); }
        case 3u: { return tanh(x); }
        case 4u: { return x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 5u: { return clamp(x * alpha + beta, 0.0, 1.0); }
        case 6u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678)); }
        case 7u: { return erf_approx(x); }
        case 9u: { return 0.5 * x * (1.0 + tanh(0.7978845608 * (x + 0.044715 * x * x * x))); }
        case 10u: { return exp(x); }
        case 11u: { return log(x); }
        case 12u: { return sqrt(x); }
        case 13u: { return abs(x); }
        case 14u: { return -x; }
        case 15u: { return 1.0 / x; }
        case 16u: { return floor(x); }
        case 17u: { return ceil(x); }
        case 18u: { return round(x); }  // half to even, as ONNX Round
        case 19u: { return sign(x); }
        case 20u: { return softplus(x); }
        case 21u: { return x / (1.0 + abs(x)); }
        case 22u: { return select(alpha * (exp(x) - 1.0), x, x > 0.0); }                   // Elu
        case 23u: { return gamma * select(alpha * (exp(x) - 1.0), x, x > 0.0); }         // Selu
        case 24u: { return max(0.0, x) + min(0.0, alpha * (exp(x / alpha) - 1.0)); }     // Celu
        case 25u: { return select(0.0, x, x > alpha); }                                    // ThresholdedRelu
        case 26u: { return x * tanh(softplus(x)); }                                          // Mish
        case 27u: { return sin(x); }
        case 28u: { return cos(x); }
        case 29u: { return select(select(0.0, x + beta, x < -alpha), x - beta, x > alpha); } // Shrink
        case 30u: { return trunc(x); }
        default: { return x * alpha + beta; }  // 8: affine
    }
}
// END FUNCTIONS
