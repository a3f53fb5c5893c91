//! Runs a tree of elementwise layers (`Unary`, `Binary`) as one kernel: a layer joins the layer
//! that reads its output when that is the output's only reader, so every intermediate value
//! stays in registers and one dispatch replaces many (a curve applied eight times was 40
//! dispatches of a few microseconds' work each).
//!
//! A tree reads at most [`ElementwiseProgram::MAX_INPUTS`] values from outside; a layer that
//! would take it past that starts a tree of its own.

use crate::model::{ElementwiseProgram, ElementwiseStep, LayerOp, Model, Operand, ValueId};

/// A tree being built: the program, the values it reads, and the layers it replaces.
struct Tree {
    program: ElementwiseProgram,
    inputs: Vec<ValueId>,
    members: Vec<usize>,
    /// Values this tree computes itself (a joined layer's output), by the step that gives them.
    computed: Vec<(ValueId, Operand)>,
}

/// Returns the model and how many layers were folded into others.
pub fn apply(mut model: Model) -> (Model, usize) {
    let mut trees: Vec<Option<Tree>> = (0..model.layers.len()).map(|_| None).collect();
    for i in 0..model.layers.len() {
        if !is_elementwise(&model.layers[i].op) {
            continue;
        }
        let mut tree = Tree {
            program: ElementwiseProgram::new(Vec::new()),
            inputs: Vec::new(),
            members: vec![i],
            computed: Vec::new(),
        };
        let mut operands = Vec::new();
        let inputs = model.layers[i].inputs.clone();
        for (j, &v) in inputs.iter().enumerate() {
            let reserve = inputs.len() - j - 1;
            operands.push(operand(&model, &mut trees, &mut tree, v, reserve));
        }
        let step = match (&model.layers[i].op, operands.as_slice()) {
            (LayerOp::Unary(op), &[a]) => ElementwiseStep::Unary(*op, a),
            (LayerOp::Binary(op), &[a, b]) => ElementwiseStep::Binary(*op, a, b),
            _ => continue,
        };
        tree.program.steps.push(step);
        trees[i] = Some(tree);
    }
    let mut folded = 0;
    let mut remove = vec![false; model.layers.len()];
    for (i, tree) in trees.into_iter().enumerate() {
        let Some(tree) = tree.filter(|t| t.members.len() > 1) else {
            continue;
        };
        folded += tree.members.len() - 1;
        for &m in &tree.members[1..] {
            remove[m] = true;
        }
        let root = &mut model.layers[i];
        root.op = LayerOp::Elementwise(tree.program);
        root.inputs = tree.inputs;
    }
    let mut k = 0;
    model.layers.retain(|_| {
        k += 1;
        !remove[k - 1]
    });
    (model, folded)
}

fn is_elementwise(op: &LayerOp) -> bool {
    matches!(op, LayerOp::Unary(_) | LayerOp::Binary(_))
}

/// The operand of `tree` that reads `v`: the steps of the tree that computes `v` when `v` has
/// no other reader (moved into `tree`), else an input. A value read twice (x * x) is one operand.
/// `reserve` inputs are kept free for the layer's operands after this one.
fn operand(
    model: &Model,
    trees: &mut [Option<Tree>],
    tree: &mut Tree,
    v: ValueId,
    reserve: usize,
) -> Operand {
    if let Some(&(_, o)) = tree.computed.iter().find(|(x, _)| *x == v) {
        return o;
    }
    if let Some(k) = tree.inputs.iter().position(|&x| x == v) {
        return Operand::Input(k as u32);
    }
    let joins = model.producer(v).filter(|&p| {
        model.readers(v) == 1
            && trees[p].as_ref().is_some_and(|t| {
                let new = t.inputs.iter().filter(|x| !tree.inputs.contains(x)).count();
                tree.inputs.len() + new + reserve <= ElementwiseProgram::MAX_INPUTS
            })
    });
    let Some(p) = joins else {
        // Room was reserved: a Unary or Binary layer reads at most two values.
        tree.inputs.push(v);
        return Operand::Input(tree.inputs.len() as u32 - 1);
    };
    let sub = trees[p].take().expect("checked above");
    let base = tree.program.steps.len() as u32;
    let remap = |o: Operand, inputs: &mut Vec<ValueId>| match o {
        Operand::Step(s) => Operand::Step(base + s),
        Operand::Input(k) => {
            let value = sub.inputs[k as usize];
            let at = inputs.iter().position(|&x| x == value).unwrap_or_else(|| {
                inputs.push(value);
                inputs.len() - 1
            });
            Operand::Input(at as u32)
        }
    };
    for step in &sub.program.steps {
        let moved = match *step {
            ElementwiseStep::Unary(op, a) => ElementwiseStep::Unary(op, remap(a, &mut tree.inputs)),
            ElementwiseStep::Binary(op, a, b) => {
                ElementwiseStep::Binary(op, remap(a, &mut tree.inputs), remap(b, &mut tree.inputs))
            }
        };
        tree.program.steps.push(moved);
    }
    tree.members.extend(&sub.members);
    tree.computed
        .extend(sub.computed.iter().map(|&(x, o)| match o {
            Operand::Step(s) => (x, Operand::Step(base + s)),
            input => (x, input),
        }));
    let result = Operand::Step(tree.program.steps.len() as u32 - 1);
    tree.computed.push((v, result));
    result
}
