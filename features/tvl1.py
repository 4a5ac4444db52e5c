"""OpenCV's CPU Dual TV-L1 optical flow (opencv_contrib modules/optflow/src/tvl1flow.cpp, the object made by
cv2.optflow.DualTVL1OpticalFlow_create() with its defaults) written in PyTorch ops, for a batch of frame pairs on
any device.

`tvl1(first, second, device)` maps uint8 grayscale frames [B, H, W] to float32 displacements [B, H, W, 2] in
pixels (channel 0 horizontal, 1 vertical), the field OpenCV's `calc(first[i], second[i], None)` returns for
every pair i: numpy in, numpy out; tensors in, a tensor on `device` out.

Replicated, step by step (each is tested against OpenCV on its own in tests/test_tvl1.py):
- parameters: tau 0.25, lambda 0.15, theta 0.3, 5 scales, 5 warps, epsilon 0.01, 30 inner and 10 outer
  iterations, scale step 0.8, gamma 0 (no u3 term), 5x5 median filtering, no initial flow; frames in 0..255;
- the pyramid: repeated cv::resize(fx = fy = 0.8, INTER_LINEAR) on float32 images: sizes rounded from
  size * 0.8 (half to even), source coordinate (d + 0.5) * 1.25 - 0.5 cast to float, columns past the edge
  take the edge pixel, rows are clamped with their fraction kept, columns first, each pass a + (b - a) f with
  a fused multiply-add as OpenCV 5.0 computes it; building stops at the first level under 16 px in either
  direction (that level is dropped);
- the flow of a coarser level resized bilinearly (the same rule, ratio from the sizes) to the finer size and
  multiplied by 1.25;
- centred gradients with one-sided halves on the border rows and columns;
- warping by cv::remap INTER_CUBIC, BORDER_CONSTANT 0 (a = -0.75, taps outside the image count 0), by either
  rule (`grid`): OpenCV up to 4.x, which made the released feature sets (coordinates x + u rounded to 1/32 px
  half to even, weights from its 32-entry table, products of the 1-D weights summed row by row inside and tap
  by tap near the border), or OpenCV 5.0 (weights at the exact coordinates in its float32 operation order,
  rows and then columns chained by fused multiply-adds);
- cv::medianBlur(ksize 5) on float32 with replicated borders before every outer pass (the median is exact:
  min/max steps on sorted columns shared between neighbouring windows, see _median_plan);
- the thresholding step, divergence (incl. its first-column order), forward gradients and dual update (hypot)
  in OpenCV's float32 operation order, with the dual variables zeroed once per scale and kept across warps;
- the stopping test: after every inner iteration a pair whose error, OpenCV's serial float32 sum of the
  squared updates in row-major order, is <= float32(epsilon^2 H W) stops its current warp (both loops), each
  pair on its own; finished pairs leave the working batch, so batching does not change a pair's result. The
  test is decided from a float64 sum on the device wherever the serial sum's rounding bound keeps it on one
  side of the limit, and by the serial sum itself (numpy's accumulate on the host) for the few pairs near it;
- blocks: one call runs up to `block` inner iterations (one compiled graph), a pair whose verdict is not 0
  keeps that iteration's state (masks), and the block's verdicts reach the host in one copy (plus the updates
  of the pairs whose verdict is 2; one that goes on resumes alone): the per-iteration loop's fields bit for
  bit, whatever the block.

Known to differ, in the last bit: OpenCV 5.0's enlarging resize at some pixels and its remap at a few border
pixels; torch.hypot (SLEEF on vector lanes) against glibc's hypotf in rare cases. (The compiled kernels,
`compiled=True`, gave the eager ops' fields bit for bit wherever compared on a CPU; on CUDA that rests
on compile_options.) One pyramid level then agrees
with OpenCV to 1e-7 relative L2, but the thresholding and median steps amplify such differences over 5
levels where the motion is discontinuous (see docs/optical_flow.md for the figures). Map coordinates beyond
the 16-bit range OpenCV saturates to are not saturated here.
"""
import numpy as np
import torch
import torch.fx.experimental._config as fx_config
import torch.nn.functional as F

TAU, LAMBDA, THETA = 0.25, 0.15, 0.3
SCALES, WARPS, EPSILON = 5, 5, 0.01
INNER, OUTER = 30, 10
# inner iterations per call of the block step (one compiled graph, one copy of verdicts) by device type: on 2
# CPU cores blocks of 10 were slower than single iterations (docs/optical_flow.md); CUDA's is unmeasured yet
BLOCK = {"cpu": 1, "cuda": 10}
SCALE_STEP = 0.8
MIN_SIZE = 16                      # pyramid levels under this many px (rows or cols) are dropped
TAB = 32                           # INTER_TAB_SIZE: remap coordinates are rounded to 1/32 px
L_T = float(np.float32(LAMBDA * THETA))     # float32 values held as Python floats (torch.compile-friendly)
TAUT = float(np.float32(TAU / THETA))
THETA_32 = float(np.float32(THETA))
FLT_EPSILON = float(np.finfo(np.float32).eps)


# ------------------------------------------------------------------------------------------- input checks

def _frames(x, name, device):
    """uint8 numpy/tensor [B, H, W] -> float32 tensor [B, H, W] on `device`, 0..255."""
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise ValueError(f"tvl1: {name} must be uint8 grayscale frames, got numpy {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"tvl1: {name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise ValueError(f"tvl1: {name} must be uint8 grayscale frames, got {x.dtype}")
    if x.dim() != 3:
        raise ValueError(f"tvl1: {name} must be [B, H, W] (3-D), got shape {tuple(x.shape)}")
    return x.to(device).float()


def _inputs(first, second, device):
    """Checked float32 [B, H, W] pair of batches on the device."""
    device = torch.device(device)
    a, b = _frames(first, "first", device), _frames(second, "second", device)
    if a.shape != b.shape:
        raise ValueError(f"tvl1: first and second differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.shape[1] < 3 or a.shape[2] < 3:
        raise ValueError(f"tvl1: frames must be at least 3x3 px, got {tuple(a.shape[1:])}")
    return a, b


# -------------------------------------------------------------------------------------- resize (pyramid)

def pyramid_sizes(h, w):
    """[(h, w)] of the levels OpenCV's TV-L1 builds, finest first (cv::resize by 0.8, sizes rounded)."""
    sizes = [(h, w)]
    while len(sizes) < SCALES:
        h, w = round(h * SCALE_STEP), round(w * SCALE_STEP)
        if h < MIN_SIZE or w < MIN_SIZE:
            break
        sizes.append((h, w))
    return sizes


def _fma(a, b, c):
    """a * b + c rounded once to float32, as a fused multiply-add (exact products in float64)."""
    return (a.double() * b.double() + (c.double() if torch.is_tensor(c) else c)).float()


def _linear_taps(src, dst, scale, clamp_fraction, device):
    """cv::resize INTER_LINEAR taps of one axis: (i0, i1, f) [dst], the fraction f float32 as OpenCV makes it."""
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = (f - i).astype(np.float32)
    if clamp_fraction:                                    # columns: out of range -> the edge pixel, fraction 0
        f[(i < 0) | (i >= src - 1)] = 0
    as_t = lambda v: torch.from_numpy(np.ascontiguousarray(v)).to(device)
    return as_t(np.clip(i, 0, src - 1)), as_t(np.clip(i + 1, 0, src - 1)), as_t(f)


def resize_linear(x, size, scale=None):
    """cv::resize(INTER_LINEAR) of float32 [..., H, W] to size (h, w) -> [..., h, w]. `scale`: the factor given
    as fx = fy (then OpenCV maps with 1 / scale); None: the ratio of the sizes (dsize given). Each pass is the
    interpolation a + (b - a) f with a fused multiply-add, columns first, as OpenCV 5.0 computes it (equal to
    cv2.resize when shrinking; its enlarging differs in the last bit at some pixels)."""
    (h, w), (sh, sw) = size, x.shape[-2:]
    sx = 1.0 / scale if scale else 1.0 / (w / sw)
    sy = 1.0 / scale if scale else 1.0 / (h / sh)
    c0, c1, fx = _linear_taps(sw, w, sx, True, x.device)
    r0, r1, fy = _linear_taps(sh, h, sy, False, x.device)
    left = x.index_select(-1, c0)
    rows = _fma(x.index_select(-1, c1) - left, fx, left)                         # [..., sh, w]
    top = rows.index_select(-2, r0)
    return _fma(rows.index_select(-2, r1) - top, fy[:, None], top)               # [..., h, w]


# -------------------------------------------------------------------------------------- image operators

def centered_gradient(x):
    """OpenCV's centredGradient of float32 [B, H, W] -> (dx, dy), halves of one-sided differences on the border."""
    dx, dy = torch.empty_like(x), torch.empty_like(x)
    dx[..., 1:-1] = 0.5 * (x[..., 2:] - x[..., :-2])
    dx[..., 0] = 0.5 * (x[..., 1] - x[..., 0])
    dx[..., -1] = 0.5 * (x[..., -1] - x[..., -2])
    dy[..., 1:-1, :] = 0.5 * (x[..., 2:, :] - x[..., :-2, :])
    dy[..., 0, :] = 0.5 * (x[..., 1, :] - x[..., 0, :])
    dy[..., -1, :] = 0.5 * (x[..., -1, :] - x[..., -2, :])
    return dx, dy


def cubic_weights(x):
    """OpenCV's interpolateCubic (A = -0.75) at fractions x (float32 tensor [...]) -> weights [..., 4]."""
    a = -0.75
    x1, xm = x + 1.0, 1.0 - x
    c0 = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    c1 = (((a + 2) * x - (a + 3)) * x) * x + 1.0
    c2 = (((a + 2) * xm - (a + 3)) * xm) * xm + 1.0
    return torch.stack([c0, c1, c2, ((1.0 - c0) - c1) - c2], -1)


def _cubic_weights_exact(x):
    """OpenCV 5.0's cubic weights (A = -0.75) at fractions x (float32 tensor [...]) -> [..., 4], in its float32
    operation order (fused multiply-adds in the middle weight; the third is what the others leave of 1)."""
    a = -0.75
    t = 1.0 - x
    c0 = a * (x * ((x - 1.0) * (x - 1.0)))
    c1 = _fma(_fma(torch.full_like(x, a + 2), x, -(a + 3)), x * x, 1.0)
    c3 = a * (t * ((t - 1.0) * (t - 1.0)))
    return torch.stack([c0, c1, ((1.0 - c0) - c1) - c3, c3], -1)


CUBIC = cubic_weights(torch.arange(TAB, dtype=torch.float32) * np.float32(1 / TAB))   # [32, 4]


def remap_cubic(img, map_x, map_y, grid=TAB):
    """cv::remap(img, map_x, map_y, INTER_CUBIC, BORDER_CONSTANT, 0) of float32 [B, H, W] with float32 absolute
    maps [B, H, W] -> [B, H, W]. grid=32: OpenCV up to 4.x (coordinates rounded to 1/32 px, weights from its
    table, products of the two 1-D weights summed row by row); grid=None: OpenCV 5.0 (weights at the exact
    coordinates, each row interpolated with fused multiply-adds, then the rows the same way)."""
    return _remap_apply(img, _remap_taps(map_x, map_y, img.shape[-2:], grid))


def _remap_taps(map_x, map_y, size, grid):
    """What remap needs from the maps [B, H, W], shared by every image remapped with them: flat tap indices
    [B, H * W * 16], taps inside the image (bool [B, H, W, 16]), 1-D weights cx, cy [B, H, W, 4], the 2-D
    weights [B, H, W, 16] (grid mode; None for OpenCV 5.0's rule) and the border pixels (bool [B, H, W]),
    whose taps OpenCV up to 4.x adds one by one."""
    h, w = size
    if grid:
        qx, qy = torch.round(map_x * grid).long(), torch.round(map_y * grid).long()   # half to even
        x0, y0 = torch.div(qx, grid, rounding_mode="floor"), torch.div(qy, grid, rounding_mode="floor")
        tab = CUBIC.to(map_x.device)
        cx, cy = tab[qx - x0 * grid], tab[qy - y0 * grid]                            # [B, H, W, 4]
    else:
        fx, fy = torch.floor(map_x), torch.floor(map_y)
        cx, cy = _cubic_weights_exact(map_x - fx), _cubic_weights_exact(map_y - fy)
        x0, y0 = fx.long(), fy.long()
    k = torch.arange(4, device=map_x.device) - 1
    xs, ys = x0[..., None] + k, y0[..., None] + k                                   # [B, H, W, 4]
    valid = (((ys >= 0) & (ys < h))[..., :, None] & ((xs >= 0) & (xs < w))[..., None, :]).flatten(-2)
    idx = ys.clamp(0, h - 1)[..., :, None] * w + xs.clamp(0, w - 1)[..., None, :]   # [B, H, W, 4, 4]
    weights = (cy[..., :, None] * cx[..., None, :]).flatten(-2) if grid else None  # [B, H, W, 16]
    inside = (x0 >= 1) & (x0 < max(w - 2, 1)) & (y0 >= 1) & (y0 < max(h - 2, 1))
    return idx.reshape(idx.shape[0], -1), valid, cx, cy, weights, ~inside


def _remap_apply(img, taps):
    """img [B, H, W] remapped with _remap_taps' result -> [B, H, W]."""
    idx, valid, cx, cy, weights, border = taps
    vals = img.reshape(img.shape[0], -1).gather(1, idx).reshape(valid.shape) * valid   # [B, H, W, 16], 0 outside
    if weights is None:
        rows = _fma_dot(vals.unflatten(-1, (4, 4)), cx[..., None, :])                   # [B, H, W, 4]
        return _fma_dot(rows, cy)
    terms = vals * weights
    rows = ((terms[..., 0::4] + terms[..., 1::4]) + terms[..., 2::4]) + terms[..., 3::4]   # [B, H, W, 4]
    inside = ((rows[..., 0] + rows[..., 1]) + rows[..., 2]) + rows[..., 3]
    tap_by_tap = terms[..., 0]
    for i in range(1, 16):
        tap_by_tap = tap_by_tap + terms[..., i]
    return torch.where(border, tap_by_tap, inside)


def _fma_dot(v, c):
    """sum_i v[..., i] c[..., i] over the last axis of 4 as OpenCV 5.0 chains it: v0 c0, then three fused
    multiply-adds -> [...]."""
    total = v[..., 0] * c[..., 0]
    for i in range(1, 4):
        total = _fma(v[..., i], c[..., i], total.double())
    return total


def _odd_even_merge(lo, n, r=1):
    """Batcher's odd-even merge of wires lo .. lo + n - 1 (n a power of two, both halves sorted): pairs (i, j)."""
    if 2 * r < n:
        yield from _odd_even_merge(lo, n, 2 * r)
        yield from _odd_even_merge(lo + r, n, 2 * r)
        yield from ((i, i + r) for i in range(lo + r, lo + n - r, 2 * r))
    else:
        yield lo, lo + r


def _network(pairs, line, need):
    """A comparator network (pairs (i, j): min to i, max to j) on the wires `line` (ids; None: +inf, free)
    pruned to what the positions `need` of its output depend on -> (min/max steps [(is_max, out, a, b)], the
    output's wire ids by position, the input ids it reads). New wires are numbered from 1000."""
    line, inputs, steps, fresh = list(line), set(line), [], 1000
    for i, j in pairs:
        if line[i] is None or line[j] is None:
            line[i], line[j] = (line[i], line[j]) if line[j] is None else (line[j], None)
            continue
        steps += [(False, fresh, line[i], line[j]), (True, fresh + 1, line[i], line[j])]
        line[i], line[j], fresh = fresh, fresh + 1, fresh + 2
    wanted, kept = {line[k] for k in need}, []
    for step in reversed(steps):
        if step[1] in wanted:
            kept.append(step)
            wanted |= {step[2], step[3]}
    return kept[::-1], line, wanted & inputs


def _merge(na, nb, need):
    """_network merging a sorted run of na values (wires 0 ..) with one of nb (wires 100 ..), for the output
    ranks `need`."""
    n = 1
    while n < max(na, nb):
        n *= 2
    line = list(range(na)) + [None] * (n - na) + list(range(100, 100 + nb)) + [None] * (n - nb)
    return _network(_odd_even_merge(0, 2 * n), line, need)


def _median_plan():
    """The 5x5 median as merges of sorted columns shared between neighbouring windows: C sorts each pixel's 5
    vertical neighbours; M2 at column j merges C[j] and C[j + 1]; M3 at j merges M2[j] and C[j + 2]; the median
    at x is rank 12 of M3[x] merged with M2[x + 3]. Each level computes only the ranks the next ones read: 116
    min/max steps per pixel, where one selection network over the 25 values takes 202."""
    final = _merge(15, 10, [12])
    m3 = _merge(10, 5, [w for w in final[2] if w < 100])
    m2 = _merge(5, 5, {w for w in m3[2] if w < 100} | {w - 100 for w in final[2] if w >= 100})
    column = _network([(0, 3), (1, 4), (0, 2), (1, 3), (0, 1), (2, 4), (1, 2), (3, 4), (2, 3)], range(5), range(5))
    return column, m2, m3, final


MEDIAN_PLAN = _median_plan()


def _run(network, left, right=None):
    """Apply a _median_plan network to runs of tensors by rank (left: wires 0 .., right: 100 ..) -> the output
    run by rank (None where nothing needs it)."""
    steps, line, _ = network
    vals = {i: t for i, t in enumerate(left)} | ({100 + i: t for i, t in enumerate(right)} if right else {})
    for is_max, out, a, b in steps:
        vals[out] = torch.maximum(vals[a], vals[b]) if is_max else torch.minimum(vals[a], vals[b])
    return [vals.get(w) for w in line]


def median5(x):
    """cv::medianBlur(x, 5) of float32 [..., H, W] (replicated border) -> [..., H, W], exactly (min/max only)."""
    h, w = x.shape[-2:]
    pad = F.pad(x.reshape(-1, 1, h, w), (2, 2, 2, 2), mode="replicate")[:, 0]      # [N, H + 4, W + 4]
    column, m2, m3, final = MEDIAN_PLAN
    c = _run(column, [pad[:, dy:dy + h] for dy in range(5)])                        # ranks, [N, H, W + 4] each
    shift = lambda run, j, width: [None if t is None else t[..., j:j + width] for t in run]
    pairs = _run(m2, shift(c, 0, w + 3), shift(c, 1, w + 3))                        # [N, H, W + 3]
    triples = _run(m3, shift(pairs, 0, w), shift(c, 2, w))                          # [N, H, W]
    return _run(final, triples, shift(pairs, 3, w))[12].reshape(x.shape)


# ------------------------------------------------------------------------------------------- the solver

def warp_constants(i0, i1, i1x, i1y, u, grid):
    """I1 and its gradient warped by the flow u [b, 2, H, W] -> what the thresholding step needs for this warp,
    [b, 4, H, W]: the warped gradient (x, y), its squared norm `grad` and rho_c."""
    h, w = i0.shape[-2:]
    gx = torch.arange(w, device=i0.device, dtype=torch.float32)
    gy = torch.arange(h, device=i0.device, dtype=torch.float32)[:, None]
    taps = _remap_taps(gx + u[:, 0], gy + u[:, 1], (h, w), grid)
    i1w, i1wx, i1wy = (_remap_apply(img, taps) for img in (i1, i1x, i1y))
    grad = i1wx * i1wx + i1wy * i1wy
    rho_c = ((i1w - i1wx * u[:, 0]) - i1wy * u[:, 1]) - i0
    return torch.stack([i1wx, i1wy, grad, rho_c], 1)


def _divergence(v1, v2):
    """OpenCV's divergence of (v1, v2) [..., H, W]: backward differences, zero outside, first column in its order."""
    d1, d2 = v1.clone(), v2.clone()
    d1[..., 1:] -= v1[..., :-1]
    d2[..., 1:, :] -= v2[..., :-1, :]
    div = d1 + d2
    div[..., 1:, 0] = (v1[..., 1:, 0] + v2[..., 1:, 0]) - v2[..., :-1, 0]
    return div


def _forward_gradient(u):
    """Forward differences of u [..., H, W] -> (ux, uy), zero in the last column / row."""
    ux, uy = torch.zeros_like(u), torch.zeros_like(u)
    ux[..., :-1] = u[..., 1:] - u[..., :-1]
    uy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
    return ux, uy


def _dual(px, py, u):
    """estimateDualVariables, both flow components at once: p <- (p + taut Du) / (1 + taut |Du|)."""
    ux, uy = _forward_gradient(u)
    g = torch.hypot(ux, uy)
    ng = 1.0 + TAUT * g
    return (px + TAUT * ux) / ng, (py + TAUT * uy) / ng


def iteration(state, warp, limits):
    """One inner iteration for a batch. state [b, 3, 2, H, W]: the flow u and the dual variables' x and y parts
    (dim 2: flow component); warp: warp_constants' [b, 4, H, W]; limits: stop_limits' -> (new state, the squared
    flow update per pixel [b, H, W], the stopping verdict per pair [b] (see stop_verdict))."""
    u, px, py = state.unbind(1)                                                 # [b, 2, H, W] each
    ixy, grad, rho_c = warp[:, :2], warp[:, 2], warp[:, 3]
    rho = rho_c + (ixy[:, 0] * u[:, 0] + ixy[:, 1] * u[:, 1])
    lg = L_T * grad
    fi = torch.where(grad > FLT_EPSILON, -rho / grad, torch.zeros_like(rho))
    fi = torch.where(rho > lg, -L_T, torch.where(rho < -lg, L_T, fi))            # [b, H, W]
    v = u + fi[:, None] * ixy
    n = v + THETA_32 * _divergence(px, py)
    e = n - u
    px, py = _dual(px, py, n)
    update = e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1]                              # [b, H, W]
    return torch.stack([n, px, py], 1), update, stop_verdict(update, limits)


def stop_limits(eps, n, device):
    """OpenCV's stopping test is serial_sum(update) <= eps (float32) over n pixels. A serial float32 sum of n
    terms >= 0 lies within gamma = (n - 1) u / (1 - (n - 1) u) (u = 2^-24) of the exact sum, so an exact sum at
    most eps / (1 + gamma) passes it and one over eps / (1 - gamma) fails it, whatever the order of additions
    -> those two limits, float64 [2] on `device` (gamma widened by 1e-9 for the float64 arithmetic)."""
    gamma = (n - 1) * 2.0 ** -24 / (1 - (n - 1) * 2.0 ** -24) + 1e-9
    return torch.tensor([float(eps) / (1 + gamma), float(eps) / (1 - gamma)], dtype=torch.float64, device=device)


def stop_verdict(update, limits):
    """Per pair of update [b, H, W], from its float64 sum: 1 it stops, 0 it goes on, 2 too close to eps to say
    without OpenCV's serial float32 sum (see stop_limits) -> int8 [b]."""
    total = update.sum((1, 2), dtype=torch.float64)
    return torch.where(total <= limits[0], 1, torch.where(total > limits[1], 0, 2)).to(torch.int8)


def serial_sum(x):
    """Per pair, OpenCV's stopping error: a float32 running sum over the pixels of x [b, H, W] in row-major
    order (numpy's accumulate adds one element at a time) -> float32 numpy [b]."""
    flat = x.reshape(x.shape[0], -1).cpu().numpy()
    return np.add.accumulate(flat, axis=1, dtype=np.float32)[:, -1]


def block_step(k):
    """`step(state, warp, limits, budget)`: up to k inner iterations in one call (one compiled graph), each pair
    i running at most budget[i] (int32 tensor [b]) of them and keeping the state of the iteration whose
    stop_verdict is not 0 (frozen with masks from there on), so that its iterates are the per-iteration loop's
    bit for bit -> (state, the squared update of each pair's last iteration [b, H, W], int32 [2, b]: the
    iterations each pair ran and the verdict of its last one)."""
    def step(state, warp, limits, budget):
        ran = torch.zeros_like(budget)
        last = torch.zeros_like(budget)
        going = budget > 0
        update = None
        for i in range(k):
            new, new_update, verdict = iteration(state, warp, limits)
            run = going & (budget > i)
            state = torch.where(run[:, None, None, None, None], new, state)
            update = new_update if update is None else torch.where(run[:, None, None], new_update, update)
            last = torch.where(run, verdict.to(last.dtype), last)
            ran = ran + run.to(ran.dtype)
            going = run & (verdict == 0)
        return state, update, torch.stack([ran, last])
    return step


def verdicts(info, update, eps):
    """The host's part of a block: its verdicts `info` (block_step's int32 [2, b], the one copy from the device)
    -> (iterations run [b], stopped bool [b]) numpy, OpenCV's test serial_sum(update) <= eps decided on the
    host for the pairs whose verdict is 2 (a second copy, of their updates only: see stop_verdict)."""
    ran, verdict = info.cpu().numpy()
    unsure = np.flatnonzero(verdict == 2)
    if len(unsure):
        verdict[unsure] = serial_sum(update[torch.from_numpy(unsure).to(update.device)]) <= eps
    return ran, verdict == 1


def compile_options(device, known=None):
    """The inductor settings under which the port's compiled kernels compute the eager ops' fields on
    `device`'s kind, or None where `known` (inductor's config names; None: the installed torch's) lacks them:
    the port then runs op by op there (the same fields, slower). A CPU needs none. CUDA: Triton's
    float32 division rounded as eager's (eager_numerics.division_rounding, named emulate_divison_rounding in
    torch 2.10) and no contraction of multiply-adds (emulate_precision_casts), both required; denormals kept
    and the CUDA toolkit's libdevice (eager_numerics.disable_ftz, use_pytorch_libdevice) where they exist."""
    if torch.device(device).type != "cuda":
        return {}
    known = torch._inductor.config.get_config_copy() if known is None else known
    division = [k for k in ("eager_numerics.division_rounding", "emulate_divison_rounding") if k in known]
    if not division or "emulate_precision_casts" not in known:
        return None
    wanted = division[:1] + ["emulate_precision_casts", "eager_numerics.disable_ftz",
                             "eager_numerics.use_pytorch_libdevice"]
    return {k: True for k in wanted if k in known}


def kernels(compiled=False, device="cpu", block=None):
    """(warp_constants, the block step (block_step(block)), median5): as written, or torch.compile'd with
    compile_options(device) (dynamic shapes: compiled on first use in a process, once for a batch of one pair
    and once for larger batches, then reused at every size). Where the installed torch lacks those options for
    the device, op by op (the same fields, slower). block None: BLOCK for the device's type."""
    block = block or BLOCK.get(torch.device(device).type, 1)
    options = compile_options(device) if compiled else None
    if options is None:
        return warp_constants, block_step(block), median5
    key = (torch.device(device).type, block)
    if key not in _COMPILED:
        _COMPILED[key] = (_compile(warp_constants, options), _compile(block_step(block), options, True),
                          _compile(median5, options))
    return _COMPILED[key]


_COMPILED = {}                      # (device type, block) -> the compiled kernels, built once per process


def _compile(f, options, fullgraph=False):
    """torch.compile(f, dynamic=True) with inductor `options`, traced without duck sizing: otherwise sizes that
    happen to be equal when it traces (a batch of 2 pairs and the 2 flow components, the rows and columns of a
    square frame) are taken as equal for good, and every other batch or size compiles anew. fullgraph: no
    graph break (so nothing in f waits on the host)."""
    compiled = torch.compile(f, dynamic=True, fullgraph=fullgraph, options=options or None)

    def call(*args):
        duck, fx_config.use_duck_shape = fx_config.use_duck_shape, False
        try:
            return compiled(*args)
        finally:
            fx_config.use_duck_shape = duck
    return call


def _warp_iterations(state, warp, eps, steps):
    """The outer/inner loops of one warp for a batch: state [b, 3, 2, H, W] and warp constants (see iteration).
    Each pair stops when its own error is <= eps (it leaves the working batch, the others go on). `steps`:
    kernels(); each call of its block step runs up to its k iterations and copies its verdicts to the host
    once. Returns the new state."""
    _, step, median = steps
    out, active = torch.empty_like(state), np.arange(len(state))
    limits = stop_limits(eps, state.shape[-2] * state.shape[-1], state.device)
    for _ in range(OUTER):
        state[:, 0] = median(state[:, 0])
        left = np.full(len(active), INNER)
        while left.any():
            going = np.flatnonzero(left)                       # all but a pair resumed after a verdict 2
            index = None if len(going) == len(left) else torch.from_numpy(going).to(state.device)
            part = (state, warp) if index is None else (state[index], warp[index])
            budget = torch.from_numpy(left[going].astype(np.int32)).to(state.device)
            new, update, info = step(*part, limits, budget)
            ran, done = verdicts(info, update, eps)
            if index is None:
                state = new
            else:
                state[index] = new
            left[going] -= ran
            left[going[done]] = 0
            finished = np.zeros(len(active), bool)
            finished[going[done]] = True
            if finished.any():
                keep = torch.from_numpy(np.flatnonzero(~finished)).to(state.device)
                out[torch.from_numpy(active[finished]).to(state.device)] = state[torch.from_numpy(
                    np.flatnonzero(finished)).to(state.device)]
                state, warp, active, left = state[keep], warp[keep], active[~finished], left[~finished]
                if not len(active):
                    return out
    out[torch.from_numpy(active).to(state.device)] = state
    return out


def _solve_scale(i0, i1, u, grid, steps):
    """procOneScale for a batch: frames i0, i1 [B, H, W] and the initial flow u [B, 2, H, W] -> flow [B, 2, H, W]."""
    h, w = i0.shape[-2:]
    eps = np.float32(EPSILON * EPSILON * h * w)
    i1x, i1y = centered_gradient(i1)
    state = torch.stack([u, torch.zeros_like(u), torch.zeros_like(u)], 1)   # dual variables: zero once per scale
    for _ in range(WARPS):
        warp = steps[0](i0, i1, i1x, i1y, state[:, 0], grid)
        state = _warp_iterations(state, warp, eps, steps)
    return state[:, 0]


@torch.inference_mode()
def tvl1(first, second, device="cpu", grid=TAB, compiled=False, block=None):
    """OpenCV's CPU Dual TV-L1 (defaults) for each pair (first[i], second[i]): uint8 grayscale [B, H, W] numpy
    arrays or tensors (same type, shape) -> float32 displacements [B, H, W, 2] in pixels (x, y), computed on
    `device` (str or torch.device): a numpy array for numpy input, else a tensor on `device`. `grid`: the remap
    coordinate grid, 32 as OpenCV up to 4.x (which made the released feature sets), None for OpenCV 5.0's
    exact coordinates (see remap_cubic). `compiled`: run the warp, the block of inner iterations and the
    median filter through torch.compile (about 3x faster on a CPU once compiled; the same fields as the eager
    ops bit for bit, tests/test_tvl1.py; on CUDA under compile_options, op by op where the installed torch
    lacks them). `block`: inner iterations per call and per copy of verdicts to the host (None: BLOCK of the
    device's type; it changes no field)."""
    as_numpy = isinstance(first, np.ndarray)
    i0, i1 = _inputs(first, second, device)
    sizes, steps = pyramid_sizes(*i0.shape[-2:]), kernels(compiled, i0.device, block)
    levels = [(i0, i1)]
    for size in sizes[1:]:
        levels.append(tuple(resize_linear(x, size, SCALE_STEP) for x in levels[-1]))
    u = levels[-1][0].new_zeros((len(i0), 2) + sizes[-1])              # [B, 2, h, w]
    for s in reversed(range(len(sizes))):
        u = _solve_scale(*levels[s], u, grid, steps)
        if s:
            u = resize_linear(u, sizes[s - 1]) * np.float32(1 / SCALE_STEP)
    flow = u.permute(0, 2, 3, 1).contiguous()                            # [B, H, W, 2]
    return flow.cpu().numpy() if as_numpy else flow
