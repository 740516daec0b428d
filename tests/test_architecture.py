"""The package's structure: module and function sizes, import cycles, the
GPU backend's independence from the CPU kernels, and the signatures of the
CPU/GPU kernel twins.

Everything here reads the source with ``ast`` and imports nothing from
``lrpnb``: ``lrpnb.cuda`` needs numba's CUDA target (or its simulator) to
import, and a structural rule should be checkable on any machine, fast.

Each test collects *every* offender before failing, so that one run shows the
whole list of what is left to fix.
"""
import ast
import functools
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lrpnb"

#: the lines a module may have; the kernel twins are long by nature (each
#: kernel is a loop nest written out once per layer family), network.py is
#: held tighter because it is the one most often read
MAX_MODULE_LINES = 500
MAX_TWIN_MODULE_LINES = 700
MAX_NETWORK_LINES = 450
MAX_FUNCTION_LINES = 80

#: public functions that exist on one side of a twin pair only, on purpose:
#: (twin module, side) -> {name: why}. Everything else one-sided is a
#: missing twin. An entry that no longer matches a one-sided function fails
#: ``test_twin_allow_list_is_current``, so the list cannot rot.
ONE_SIDED = {
    ("rules", "kernels"): {
        "times_input": "an inline njit helper that the CPU pool and convolution kernels call "
                       "inside their loops; the GPU kernels multiply by the input in their own "
                       "gather loops (lrpnb.cuda.activations.times_input is the array-level twin)",
    },
}

#: the backend packages whose same-named modules are twins. Their
#: ``__init__`` modules are not a twin pair: each holds its own backend's
#: launch machinery (the CPU's thread pool and BLAS limit, the GPU's grid
#: sizing), so e.g. ``blocks`` means a different thing on each side.
CPU, GPU = "kernels", "cuda"


# --- reading the package ----------------------------------------------------


def _modules():
    """Every module of the package.

    Returns
    -------
    dict
        Dotted module name (``lrpnb.kernels.conv``; a package's
        ``__init__.py`` is the package, ``lrpnb.kernels``) -> its path.
    """
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


@functools.lru_cache(maxsize=None)
def _tree(path):
    """The parsed module at ``path`` (parsed once per test session)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _relative(path):
    """``path`` as written in a message: relative to the repository."""
    return path.relative_to(ROOT).as_posix()


# --- 1. module sizes ----------------------------------------------------------


def _line_limit(path):
    """The most lines the module at ``path`` may have."""
    relative = path.relative_to(PACKAGE)
    if relative == pathlib.Path("network.py"):
        return MAX_NETWORK_LINES
    if len(relative.parts) == 2 and relative.parts[0] in (CPU, GPU):
        return MAX_TWIN_MODULE_LINES
    return MAX_MODULE_LINES


def test_no_module_is_too_long():
    offenders = []
    for path in _modules().values():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > _line_limit(path):
            offenders.append(f"{_relative(path)}: {count} lines (at most {_line_limit(path)})")
    assert not offenders, "modules over their line limit:\n" + "\n".join(offenders)


# --- 2. function sizes --------------------------------------------------------


def _functions(tree):
    """Every function and method in ``tree``, nested ones included.

    Yields
    ------
    qualname : str
        ``Class.method``, ``outer.<locals>.inner``, as Python names them.
    node : ast.FunctionDef or ast.AsyncFunctionDef
    """
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def test_no_function_is_too_long():
    # lineno is the ``def`` line, after any decorators, so decorators do not
    # count; a nested function counts on its own and within its enclosing one
    offenders = []
    for path in _modules().values():
        for name, node in _functions(_tree(path)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                offenders.append((length, f"{_relative(path)}:{node.lineno} {name} ({length})"))
    offenders = [text for _, text in sorted(offenders, reverse=True)]
    assert not offenders, (f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders))


# --- 3. and 4. imports --------------------------------------------------------


def _existing(name, modules):
    """The most specific module of the package that ``name`` names.

    ``lrpnb.kernels.conv.conv_forward`` -> ``lrpnb.kernels.conv``; None for a
    name outside the package.
    """
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports(module, modules):
    """The package modules that ``module`` imports, wherever the import
    statement is (module level, inside functions, under ``if``/``try``).

    ``import lrpnb.a.b`` imports the most specific module named;
    ``from X import n`` imports module X, and also module ``X.n`` when n is a
    submodule rather than a name defined in X. Relative imports are resolved
    against the importing module's package.

    Yields
    ------
    target : str
        The imported module's dotted name.
    lineno : int
        The line of the import statement.
    """
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _existing(alias.name, modules)
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            target = _existing(base, modules)
            if target is None:
                continue
            # a package's ``from . import sub`` names the package itself only
            # to reach the submodule: no edge from the package to itself
            if target != module:
                yield target, node.lineno
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    yield f"{base}.{alias.name}", node.lineno


def _import_graph():
    """module -> {imported module: first line importing it}, for the edges
    that can make a cycle.

    An edge from a module to a package that contains it (``lrpnb.kernels.conv``
    -> ``lrpnb.kernels`` for ``from . import JIT``, or -> ``lrpnb`` for
    ``from .. import rule_math``) is left out: Python has always started
    that package before any of its submodules, so the pattern of an
    ``__init__`` importing its submodules and those importing names from the
    ``__init__`` is harmless and common. Every other back edge is a cycle.
    """
    modules = _modules()
    graph = {module: {} for module in modules}
    for module in modules:
        for target, lineno in _imports(module, modules):
            if module.startswith(target + "."):
                continue
            graph[module].setdefault(target, lineno)
    return graph


def _strongly_connected(graph):
    """The strongly connected components of ``graph`` (Tarjan's algorithm).

    Parameters
    ----------
    graph : dict
        node -> iterable of the nodes it has edges to.

    Returns
    -------
    list of list
        Every component, each a sorted list of nodes.
    """
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):  # the package has tens of modules: recursion is fine
        if node not in index:
            visit(node)
    return components


def _cycle(graph, members):
    """One shortest cycle through the first of ``members`` (a strongly
    connected component), as the list of its nodes, first node repeated."""
    start, members = members[0], set(members)
    previous, frontier = {}, [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1] + [start]
                if successor in members and successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{sorted(members)} is not strongly connected")


def _describe_cycle(graph, members):
    """A component and one of its cycles, each edge with its import line."""
    modules = _modules()
    cycle = _cycle(graph, members)
    steps = [f"{a} -> {b} ({_relative(modules[a])}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return f"cycle among {members}:\n    " + "\n    ".join(steps)


def test_strongly_connected_finds_cycles_and_self_loops():
    # the cycle finder's own check, on a graph small enough to see by eye
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e": 1}}
    assert sorted(_strongly_connected(graph)) == [["a", "b", "c"], ["d"], ["e"]]
    assert _cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert _cycle(graph, ["e"]) == ["e", "e"]


def test_no_import_cycles():
    graph = _import_graph()
    cycles = [_describe_cycle(graph, members) for members in _strongly_connected(graph)
              if len(members) > 1 or members[0] in graph[members[0]]]
    assert not cycles, "import cycles among the package's modules:\n" + "\n".join(cycles)


def _dynamic_imports(tree):
    """``importlib.import_module("...")`` and ``__import__("...")`` calls with
    a literal name: (name, package argument or None, lineno)."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            continue
        function = node.func
        called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
        if called in ("import_module", "__import__"):
            yield node.args[0].value, node.lineno


def test_gpu_backend_does_not_import_cpu_kernels():
    # lrpnb.cuda must stand on its own: code both backends share belongs in a
    # module of neither (as lrpnb.rule_math is), not in lrpnb.kernels
    modules = _modules()
    cpu = f"lrpnb.{CPU}"
    offenders = []
    for module, path in modules.items():
        if not (module == f"lrpnb.{GPU}" or module.startswith(f"lrpnb.{GPU}.")):
            continue
        for target, lineno in _imports(module, modules):
            if target == cpu or target.startswith(cpu + "."):
                offenders.append(f"{_relative(path)}:{lineno} imports {target}")
        for name, lineno in _dynamic_imports(_tree(path)):
            if name.lstrip(".").startswith(CPU) or name.startswith(cpu):
                offenders.append(f"{_relative(path)}:{lineno} imports {name!r} dynamically")
    assert not offenders, f"lrpnb.{GPU} imports lrpnb.{CPU}:\n" + "\n".join(sorted(set(offenders)))


# --- 5. the kernel twins ------------------------------------------------------


def _top_level(tree):
    """The module-level statements of ``tree``, looking into ``if``/``try``/
    ``with`` blocks (a definition there is still a module attribute)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody"):
                pending.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
        else:
            yield node


def _assigned_names(target):
    """The names that an assignment target binds, if it binds names only
    (``a``, ``(a, b)``); none for ``a.b = ...`` or ``a[0] = ...``."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [_assigned_names(element) for element in target.elts]
        return [name for group in names for name in group] if all(names) else []
    return []


def _public(name):
    """Whether a module-level name is a public function name: no leading
    underscore, and not an ALL_CAPS constant (``SIGNATURES``, ``JIT``...)."""
    return not name.startswith("_") and not name.isupper()


def _public_functions(tree):
    """The public functions a twin module defines itself.

    Returns
    -------
    dict
        name -> its ``ast.FunctionDef``, or None when the function is bound
        by an assignment (``stabilize = njit(...)(...)``, or tuple unpacking of
        a factory's result), whose parameters ast cannot see.
    """
    functions = {}
    for node in _top_level(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _public(node.name):
                functions[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in _assigned_names(target):
                    if _public(name):
                        functions[name] = None
    return functions


def _imported_names(tree):
    """The names that module-level imports bind (re-exports)."""
    names = set()
    for node in _top_level(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add(alias.asname or alias.name.partition(".")[0])
    return names


def _signature(node):
    """What must match between twins: the positional parameters' names in
    order, how many have defaults, the keyword-only names, *args and **kwargs."""
    arguments = node.args
    return {"positional": [a.arg for a in arguments.posonlyargs + arguments.args],
            "defaults": len(arguments.defaults),
            "keyword-only": [a.arg for a in arguments.kwonlyargs],
            "*args": arguments.vararg and arguments.vararg.arg,
            "**kwargs": arguments.kwarg and arguments.kwarg.arg}


def _twins():
    """The twin module pairs: (name, CPU module's path, GPU module's path),
    for every file name in both backend packages except ``__init__.py``."""
    pairs = []
    for cpu in sorted((PACKAGE / CPU).glob("*.py")):
        gpu = PACKAGE / GPU / cpu.name
        if cpu.name != "__init__.py" and gpu.exists():
            pairs.append((cpu.stem, cpu, gpu))
    return pairs


def _one_sided():
    """Public functions with no twin: {(module, side): {name: path}}.

    A name re-exported by a module-level import counts as present (as it is
    for the backend, which looks functions up by name). The existing name
    check, ``test_cuda.test_every_cpu_kernel_has_its_gpu_twin``, imports both
    modules and looks from the CPU side only; this one needs no import of
    ``lrpnb.cuda``, looks both ways and covers every twin pair found.
    """
    found = {}
    for module, cpu, gpu in _twins():
        for side, here, there in ((CPU, cpu, gpu), (GPU, gpu, cpu)):
            present = set(_public_functions(_tree(there))) | _imported_names(_tree(there))
            for name in _public_functions(_tree(here)):
                if name not in present:
                    found.setdefault((module, side), {})[name] = _relative(here)
    return found


def test_twin_modules_exist():
    # guards the twin tests below against passing vacuously after a move
    names = [module for module, _, _ in _twins()]
    assert {"conv", "dense", "pool", "activations"} <= set(names), names


def test_every_twin_function_has_its_twin():
    missing = []
    for (module, side), names in sorted(_one_sided().items()):
        allowed = ONE_SIDED.get((module, side), {})
        other = GPU if side == CPU else CPU
        missing += [f"{path}: {name} has no twin in lrpnb/{other}/{module}.py"
                    for name, path in sorted(names.items()) if name not in allowed]
    assert not missing, "public functions without their twin:\n" + "\n".join(missing)


def test_twin_allow_list_is_current():
    found = _one_sided()
    stale = [f"lrpnb/{side}/{module}.py: {name}"
             for (module, side), names in sorted(ONE_SIDED.items())
             for name in sorted(names) if name not in found.get((module, side), {})]
    assert not stale, ("ONE_SIDED names functions that are no longer one-sided (remove them):\n"
                       + "\n".join(stale))


def test_twins_take_the_same_parameters():
    differences = []
    for module, cpu, gpu in _twins():
        cpu_functions = _public_functions(_tree(cpu))
        gpu_functions = _public_functions(_tree(gpu))
        for name in sorted(set(cpu_functions) & set(gpu_functions)):
            # a function bound by assignment on either side: presence only
            if cpu_functions[name] is None or gpu_functions[name] is None:
                continue
            cpu_signature = _signature(cpu_functions[name])
            gpu_signature = _signature(gpu_functions[name])
            if cpu_signature != gpu_signature:
                differences.append(
                    f"{module}.{name}: {_relative(cpu)}:{cpu_functions[name].lineno} {cpu_signature}"
                    f" != {_relative(gpu)}:{gpu_functions[name].lineno} {gpu_signature}")
    assert not differences, "twins with different parameters:\n" + "\n".join(differences)
