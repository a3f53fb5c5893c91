//! A row of an input patch read whole, for the generated kernels that read rows (the depthwise
//! rows and the first convolutions' rows, `conv2d_rows.rs`): the vec4s that hold the columns a
//! kernel reads, each read as a vec4, as the one value of it that is read (llvmpipe inserts a
//! load's values lane by lane, so the other 3 would cost as much as the one), or, moving 8
//! values a load (`super::eight`), two of them as one `vec4<u64>`.

/// One load of a patch row: vec4 `d`, or with `pair` vec4s `d` and `d + 1` as one `vec4<u64>`.
/// Vec4 `d` counts from the one holding the block's first input column before the padding,
/// which starts a vec4 (with 8 values a load an even one: blocks start on 8 input columns).
pub struct Load {
    pub d: i64,
    pub pair: bool,
    /// The patch columns it holds that are read: (column, its vec4, its value in that vec4).
    pub columns: Vec<(u32, i64, u32)>,
}

/// The loads of a row of `span_w` patch columns whose column `j` is input column `x0 -
/// pad_left + j` (`x0` the block's first, a multiple of 4, of 8 with `load8`), for the columns
/// `read` says; vec4s none of whose columns is read are skipped.
pub fn plan(span_w: u32, pad_left: u32, read: impl Fn(u32) -> bool, load8: bool) -> Vec<Load> {
    let at = |j: u32| {
        let x = i64::from(j) - i64::from(pad_left);
        (x.div_euclid(4), x.rem_euclid(4) as u32)
    };
    let columns = |d: i64| -> Vec<(u32, i64, u32)> {
        (0..span_w)
            .filter(|&j| at(j).0 == d && read(j))
            .map(|j| (j, d, at(j).1))
            .collect()
    };
    let (first, last) = (at(0).0, at(span_w - 1).0);
    let mut loads = Vec::new();
    let mut d = first;
    while d <= last {
        let here = columns(d);
        // Two vec4s of which more than 2 values are read, the first an even one.
        let pair =
            load8 && d.rem_euclid(2) == 0 && d < last && here.len() + columns(d + 1).len() > 2;
        if pair {
            let both = here.into_iter().chain(columns(d + 1)).collect();
            loads.push(Load {
                d,
                pair,
                columns: both,
            });
            d += 2;
            continue;
        }
        if !here.is_empty() {
            loads.push(Load {
                d,
                pair,
                columns: here,
            });
        }
        d += 1;
    }
    loads
}

impl Load {
    /// WGSL: this load of one row as float32 values, `index` the index of vec4 `d` in a vec4
    /// array (the block's own; the row start even), read where `inside` and 0 elsewhere, named
    /// `{name}` (vec4 d, or its one value read) and `{name}_1` (a pair's second vec4). With
    /// `load8` `src` is an array of `vec4<u64>`.
    pub fn values(&self, index: &str, inside: &str, load8: bool, name: &str) -> String {
        let odd = self.d.rem_euclid(2) == 1;
        if self.pair {
            return format!(
                "let {name}_8 = select(vec4<u64>(0lu), src[({index}) / 2u], {inside}); \
                 let {name} = lo8({name}_8); let {name}_1 = hi8({name}_8);"
            );
        }
        let value = match (&self.columns[..], load8) {
            ([(_, _, e)], false) => format!("f32(src[{index}][{e}])"),
            // Value e of vec4 d: the low or high word of component 2 (d odd) + e / 2.
            ([(_, _, e)], true) => format!(
                "bitcast<f32>(u32(src[({index}) / 2u][{}] {}))",
                2 * u32::from(odd) + e / 2,
                if e % 2 == 1 {
                    ">> 32u"
                } else {
                    "& 0xfffffffflu"
                }
            ),
            (_, false) => format!("vec4<f32>(src[{index}])"),
            (_, true) => format!("{}8(src[({index}) / 2u])", if odd { "hi" } else { "lo" }),
        };
        let zero = if self.columns.len() == 1 {
            "0.0"
        } else {
            "vec4<f32>(0.0)"
        };
        format!("let {name} = select({zero}, {value}, {inside});")
    }

    /// WGSL: the value of patch column `column` (one of `columns`) as [`Self::values`] named it.
    pub fn value(&self, column: u32, name: &str) -> String {
        let &(_, d, e) = self
            .columns
            .iter()
            .find(|c| c.0 == column)
            .expect("a column this load reads");
        match (self.pair, d == self.d) {
            (false, _) if self.columns.len() == 1 => name.to_owned(),
            (false, _) | (true, true) => format!("{name}[{e}]"),
            (true, false) => format!("{name}_1[{e}]"),
        }
    }
}
