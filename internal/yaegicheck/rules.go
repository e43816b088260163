package yaegicheck

import (
	"go/ast"
	"go/token"
	"go/types"
	"strings"
)

// The rules, each a construct Yaegi v0.16.1 was seen to refuse or run
// wrongly; the message says what to write instead.
const (
	ruleImport        = "import"
	ruleBuildTag      = "go:build"
	ruleBuiltin       = "builtin"
	ruleRange         = "range"
	ruleGeneric       = "generic"
	ruleStdGeneric    = "generic-stdlib"
	ruleRecvReturn    = "receive-in-return"
	ruleParallel      = "parallel-assign"
	ruleUnnamedArgs   = "unnamed-params"
	ruleSelectAssign  = "select-assign"
	ruleSelectBranch  = "select-labeled-branch"
	ruleErrorsAs      = "errors-as"
	ruleSwitchList    = "tagless-switch-list"
	ruleReturnBuiltin = "builtin-in-return"
	ruleUnmarshaler   = "unmarshaler"
	ruleNilParallel   = "nil-in-parallel-assign"
)

const yaegi = "Yaegi v0.16.1"

func (c *Checker) checkFile(f *ast.File, info *types.Info) []Finding {
	var out []Finding
	report := func(pos token.Pos, rule, msg string) {
		out = append(out, Finding{Pos: c.fset.Position(pos), Rule: rule, Msg: msg})
	}
	checkBuildTags(f, report)
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		if !strings.HasPrefix(path, c.modPath+"/") && path != c.modPath && !yaegiStdlib[path] {
			report(imp.Pos(), ruleImport, "import "+imp.Path.Value+": "+yaegi+", as Traefik runs it, has no such package (only the standard library up to Go 1.22, without unsafe, syscall or os/exec)")
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			checkBuiltin(n, info, report)
			checkErrorsAs(n, info, report)
		case *ast.RangeStmt:
			checkRange(n, info, report)
		case *ast.FuncDecl:
			checkFuncDecl(n, report)
		case *ast.TypeSpec:
			if n.TypeParams != nil && len(n.TypeParams.List) > 0 {
				report(n.Pos(), ruleGeneric, "generic type "+n.Name.Name+": "+yaegi+" runs only some generic code (of three small generic programs, one ran, one failed to load and one crashed the interpreter); write it for the concrete type")
			}
		case *ast.ReturnStmt:
			for i, r := range n.Results {
				if isRecv(r) {
					report(r.Pos(), ruleRecvReturn, "channel receive in a return statement: "+yaegi+" panics (reflect.Value.Set using unaddressable value); receive into a variable, then return it")
				}
				if call, ok := r.(*ast.CallExpr); ok && i > 0 {
					if id, ok := unparen(call.Fun).(*ast.Ident); ok {
						if b, ok := info.Uses[id].(*types.Builtin); ok {
							report(r.Pos(), ruleReturnBuiltin, b.Name()+"() as a later result of a return: "+yaegi+" writes it into the first result (a wrong value, or reflect.Set panics); assign it to a variable first")
						}
					}
				}
			}
		case *ast.SwitchStmt:
			if n.Tag == nil {
				for _, st := range n.Body.List {
					if cc, ok := st.(*ast.CaseClause); ok && len(cc.List) > 1 {
						report(cc.Pos(), ruleSwitchList, "case with several conditions in a switch without a tag: "+yaegi+" tests only the first; join them with ||")
					}
				}
			}
		case *ast.CommClause:
			if a, ok := n.Comm.(*ast.AssignStmt); ok && a.Tok == token.ASSIGN {
				report(a.Pos(), ruleSelectAssign, "select case assigning a receive to existing variables (case v = <-ch): "+yaegi+" loses the value or panics (reflect.Select: invalid Dir); receive into new variables (case x := <-ch) and assign them in the case body")
			}
			for _, st := range n.Body {
				if b, ok := st.(*ast.BranchStmt); ok && b.Label != nil && (b.Tok == token.BREAK || b.Tok == token.CONTINUE) {
					report(b.Pos(), ruleSelectBranch, b.Tok.String()+" "+b.Label.Name+" directly in a select case: "+yaegi+" leaves only the select (break) or loops forever (continue); return, or set a flag and test it after the select")
				}
			}
		case *ast.AssignStmt:
			if n.Tok == token.ASSIGN || n.Tok == token.DEFINE {
				checkParallel(n.Pos(), len(n.Lhs), n.Rhs, n.Tok == token.DEFINE, info, report)
			}
		case *ast.ValueSpec:
			checkParallel(n.Pos(), len(n.Names), n.Values, true, info, report)
		}
		return true
	})
	return out
}

// checkBuildTags: Yaegi honours only "// +build" lines, so a file whose
// constraint is only a //go:build line is loaded whatever it says.
func checkBuildTags(f *ast.File, report func(token.Pos, string, string)) {
	var goBuild *ast.Comment
	plusBuild := false
	for _, g := range f.Comments {
		if g.Pos() >= f.Package {
			break
		}
		for _, cm := range g.List {
			switch {
			case strings.HasPrefix(cm.Text, "//go:build"):
				goBuild = cm
			case strings.HasPrefix(cm.Text, "// +build"):
				plusBuild = true
			}
		}
	}
	if goBuild != nil && !plusBuild {
		report(goBuild.Pos(), ruleBuildTag, "//go:build line without its // +build twin: "+yaegi+" reads only // +build lines, so it loads this file whatever the constraint says; add the // +build line (gofmt keeps them in sync) or drop the constraint")
	}
}

var builtinAdvice = map[string]string{
	"min":   "write the comparison",
	"max":   "write the comparison",
	"clear": "delete the keys in a loop or make a new map (for a slice, assign zero values in a loop)",
}

func checkBuiltin(call *ast.CallExpr, info *types.Info, report func(token.Pos, string, string)) {
	id, ok := unparen(call.Fun).(*ast.Ident)
	if !ok {
		return
	}
	b, ok := info.Uses[id].(*types.Builtin)
	if !ok {
		return
	}
	if advice, ok := builtinAdvice[b.Name()]; ok {
		report(call.Pos(), ruleBuiltin, b.Name()+"() builtin: "+yaegi+" cannot run it (undefined: "+b.Name()+"); "+advice)
	}
}

// checkErrorsAs: errors.As runs compiled, and an interpreted type has no
// methods in reflection, so a target of a type declared in interpreted code
// (not an interface) makes it panic.
func checkErrorsAs(call *ast.CallExpr, info *types.Info, report func(token.Pos, string, string)) {
	sel, ok := unparen(call.Fun).(*ast.SelectorExpr)
	if !ok || len(call.Args) != 2 {
		return
	}
	fn, ok := info.Uses[sel.Sel].(*types.Func)
	if !ok || fn.Pkg() == nil || fn.Pkg().Path() != "errors" || fn.Name() != "As" {
		return
	}
	ptr, ok := info.TypeOf(call.Args[1]).(*types.Pointer)
	if !ok {
		return
	}
	t := ptr.Elem()
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	named, ok := t.(*types.Named)
	if !ok || types.IsInterface(named) || named.Obj().Pkg() == nil || yaegiStdlib[named.Obj().Pkg().Path()] {
		return
	}
	report(call.Pos(), ruleErrorsAs, "errors.As into "+named.Obj().Name()+", a type of interpreted code: "+yaegi+" panics (errors: *target must be interface or implement error); use a type assertion (or errors.Is with a sentinel)")
}

func checkRange(r *ast.RangeStmt, info *types.Info, report func(token.Pos, string, string)) {
	t := info.TypeOf(r.X)
	if t == nil {
		return
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		if u.Info()&types.IsInteger != 0 {
			report(r.Pos(), ruleRange, "range over an integer: "+yaegi+" cannot run it (panic: nil type); write for i := 0; i < n; i++")
		}
	case *types.Signature:
		report(r.Pos(), ruleRange, "range over a function (iterator): "+yaegi+" cannot run it (panic: nil type); write a loop or pass a callback")
	}
}

func checkFuncDecl(fn *ast.FuncDecl, report func(token.Pos, string, string)) {
	if fn.Type.TypeParams != nil && len(fn.Type.TypeParams.List) > 0 {
		report(fn.Pos(), ruleGeneric, "generic function "+fn.Name.Name+": "+yaegi+" runs only some generic code (of three small generic programs, one ran, one failed to load and one crashed the interpreter); write it for the concrete type")
	}
	if fn.Recv != nil && (fn.Name.Name == "UnmarshalJSON" || fn.Name.Name == "UnmarshalText") {
		report(fn.Pos(), ruleUnmarshaler, fn.Name.Name+" method: encoding/json runs compiled and cannot call a method of an interpreted type, so under "+yaegi+" it is never called (a decode into the type fails or ignores it); decode into a plain type (a field of type any, a string) and convert")
	}
	if fn.Recv == nil || len(fn.Recv.List) == 0 || len(fn.Recv.List[0].Names) == 0 || fn.Recv.List[0].Names[0].Name == "_" {
		return
	}
	for _, p := range fn.Type.Params.List {
		if len(p.Names) == 0 {
			report(fn.Pos(), ruleUnnamedArgs, "method "+fn.Name.Name+" has a named receiver and unnamed parameters: "+yaegi+" stores an argument where the result goes (reflect.Set panics, or the result is wrong); name the parameters (_ will do)")
			return
		}
	}
}

// checkParallel refuses a parallel assignment (a, b = x, y) that mixes
// values Yaegi writes straight into their destination (a call, in = only; a
// composite literal; a channel receive) with other values: it then skips or
// misplaces the others. Assignments of only one kind or the other run right.
func checkParallel(pos token.Pos, nLHS int, rhs []ast.Expr, define bool, info *types.Info, report func(token.Pos, string, string)) {
	if nLHS < 2 || len(rhs) != nLHS {
		return
	}
	direct, other := "", false
	for _, e := range rhs {
		if k := directKind(e, define, info); k != "" {
			if direct == "" {
				direct = k
			}
		} else {
			other = true
		}
	}
	if !define {
		for _, e := range rhs {
			if id, ok := e.(*ast.Ident); ok {
				if _, isNil := info.Uses[id].(*types.Nil); isNil {
					report(pos, ruleNilParallel, "nil in a parallel assignment: "+yaegi+" panics (reflect: New(nil)); write one assignment per statement")
					return
				}
			}
		}
	}
	if direct != "" && other {
		report(pos, ruleParallel, "parallel assignment of a "+direct+" with other values: "+yaegi+" assigns the wrong values (the other targets keep stale ones); write one assignment per statement")
	}
}

func directKind(e ast.Expr, define bool, info *types.Info) string {
	switch e := e.(type) {
	case *ast.CompositeLit:
		return "composite literal"
	case *ast.UnaryExpr:
		if e.Op == token.ARROW {
			return "channel receive"
		}
	case *ast.CallExpr:
		if define {
			return ""
		}
		if tv, ok := info.Types[e.Fun]; ok && tv.IsType() {
			return "" // a conversion
		}
		return "call result"
	}
	return ""
}

// checkInstances refuses generic standard-library types (atomic.Pointer[T])
// and the generic standard-library functions not known to run.
func (c *Checker) checkInstances(info *types.Info) []Finding {
	var out []Finding
	for id := range info.Instances {
		obj := info.Uses[id]
		if obj == nil || obj.Pkg() == nil || strings.HasPrefix(obj.Pkg().Path(), c.modPath+"/") || obj.Pkg().Path() == c.modPath {
			continue
		}
		name := obj.Pkg().Name() + "." + obj.Name()
		switch obj.(type) {
		case *types.TypeName:
			advice := "write it for the concrete type"
			if name == "atomic.Pointer" {
				advice = "use atomic.Value"
			}
			out = append(out, Finding{Pos: c.fset.Position(id.Pos()), Rule: ruleStdGeneric, Msg: name + "[T]: generic standard-library type: " + yaegi + " cannot run it (undefined selector); " + advice})
		case *types.Func:
			if !yaegiGenericFuncs[name] {
				out = append(out, Finding{Pos: c.fset.Position(id.Pos()), Rule: ruleStdGeneric, Msg: name + ": generic standard-library function " + yaegi + " does not run (it runs only " + strings.Join(sortedKeys(yaegiGenericFuncs), ", ") + "); write the loop"})
			}
		}
	}
	return out
}

func isRecv(e ast.Expr) bool {
	u, ok := unparen(e).(*ast.UnaryExpr)
	return ok && u.Op == token.ARROW
}

func unparen(e ast.Expr) ast.Expr {
	for {
		p, ok := e.(*ast.ParenExpr)
		if !ok {
			return e
		}
		e = p.X
	}
}
