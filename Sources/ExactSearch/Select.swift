import _FunnelKernels

/// v = bias + scale * x, keeping (index, v) where v < threshold. See `fk_affine_select_below`.
@inline(__always)
func fk_select(_ x: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ scale: Float, _ n: Int,
               _ threshold: Float, _ idx: UnsafeMutablePointer<UInt32>, _ val: UnsafeMutablePointer<Float>) -> Int {
    fk_affine_select_below(x, bias, scale, n, threshold, idx, val)
}
