// Frame → network input, on the GPU: RGB8 pixels (packed r | g << 8 | b << 16 per pixel, stored
// as f32, which holds 24-bit integers exactly) are placed on a zero canvas at (left, top),
// resized with TensorFlow's legacy bilinear rule (src = dst * canvas / out, no half-pixel
// offset, edges clamped) and normalised per channel (v * mul[c] + add[c]), written as planar
// NCHW f32. One invocation per output value; workgroups along y index the image of the batch.
// `vigil_models::preprocess` runs the same computation on the CPU; a test holds them equal.

@group(0) @binding(0) var<storage, read_write> pixels: array<f32>;
// in_w, in_h, left, top, canvas_w, canvas_h, out_w, out_h, then mul[3] and add[3] as f32 bits.
@group(0) @binding(1) var<storage, read_write> params: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

fn sample(base: u32, x: i32, y: i32, c: u32) -> f32 {
    let sx = x - i32(params[2]);
    let sy = y - i32(params[3]);
    if (sx < 0 || sy < 0 || sx >= i32(params[0]) || sy >= i32(params[1])) {
        return 0.0;
    }
    let packed = u32(pixels[base + u32(sy) * params[0] + u32(sx)]);
    return f32((packed >> (8u * c)) & 255u);
}

@compute @workgroup_size(64)
fn preprocess(@builtin(global_invocation_id) gid: vec3<u32>) {
    let out_w = params[6];
    let out_h = params[7];
    let plane = out_w * out_h;
    let i = gid.x;
    if (i >= 3u * plane) {
        return;
    }
    let n = gid.y;
    let c = i / plane;
    let row = (i % plane) / out_w;
    let col = i % out_w;
    let canvas_w = params[4];
    let canvas_h = params[5];
    let src_y = f32(row) * (f32(canvas_h) / f32(out_h));
    let src_x = f32(col) * (f32(canvas_w) / f32(out_w));
    let y0 = i32(floor(src_y));
    let y1 = min(i32(ceil(src_y)), i32(canvas_h) - 1);
    let x0 = i32(floor(src_x));
    let x1 = min(i32(ceil(src_x)), i32(canvas_w) - 1);
    let fy = src_y - f32(y0);
    let fx = src_x - f32(x0);
    let base = n * params[0] * params[1];
    let tl = sample(base, x0, y0, c);
    let tr = sample(base, x1, y0, c);
    let bl = sample(base, x0, y1, c);
    let br = sample(base, x1, y1, c);
    let top = tl + (tr - tl) * fx;
    let bottom = bl + (br - bl) * fx;
    let v = top + (bottom - top) * fy;
    output[n * 3u * plane + i] = v * bitcast<f32>(params[8u + c]) + bitcast<f32>(params[11u + c]);
}
