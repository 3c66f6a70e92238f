// Package argocd runs the health checks and resource actions of
// manifests/argocd/argocd-cm.yaml the way Argo CD does: in gopher-lua, the
// interpreter Argo CD embeds, with the object as the global table obj.
package argocd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Group is the API group of our kinds, as argocd-cm keys spell it.
const Group = "rollouts.kubeseed.io"

// Config is the argocd-cm snippet of the repository.
type Config struct{ data map[string]string }

// Load reads manifests/argocd/argocd-cm.yaml.
func Load() (*Config, error) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "manifests", "argocd", "argocd-cm.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cm.Name != "argocd-cm" {
		return nil, fmt.Errorf("%s: the ConfigMap is %q, Argo CD reads argocd-cm", path, cm.Name)
	}
	return &Config{data: cm.Data}, nil
}

// Health runs the health check of kind on obj and returns Argo CD's health
// status (Healthy, Progressing, Suspended, Degraded) and message.
func (c *Config) Health(kind string, obj any) (status, message string, err error) {
	script, ok := c.data["resource.customizations.health."+Group+"_"+kind]
	if !ok {
		return "", "", fmt.Errorf("no health check for %s", kind)
	}
	out, err := run(script, obj)
	if err != nil {
		return "", "", err
	}
	var hs struct{ Status, Message string }
	if err := json.Unmarshal(out, &hs); err != nil {
		return "", "", fmt.Errorf("health check returned %s: %w", out, err)
	}
	switch hs.Status {
	case "Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown":
		return hs.Status, hs.Message, nil
	}
	return "", "", fmt.Errorf("health check returned status %q", hs.Status)
}

// actions is the actions customization of a kind.
type actions struct {
	Discovery   string `json:"discovery.lua"`
	Definitions []struct {
		Name   string `json:"name"`
		Action string `json:"action.lua"`
	} `json:"definitions"`
}

func (c *Config) actions(kind string) (actions, error) {
	var a actions
	raw, ok := c.data["resource.customizations.actions."+Group+"_"+kind]
	if !ok {
		return a, fmt.Errorf("no actions for %s", kind)
	}
	return a, yaml.UnmarshalStrict([]byte(raw), &a)
}

// Discover runs the discovery script: action name → enabled.
func (c *Config) Discover(kind string, obj any) (map[string]bool, error) {
	a, err := c.actions(kind)
	if err != nil {
		return nil, err
	}
	out, err := run(a.Discovery, obj)
	if err != nil {
		return nil, err
	}
	var found map[string]struct {
		Disabled bool `json:"disabled"`
	}
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, fmt.Errorf("discovery returned %s: %w", out, err)
	}
	enabled := map[string]bool{}
	for name, f := range found {
		enabled[name] = !f.Disabled
	}
	for _, d := range a.Definitions {
		if _, ok := enabled[d.Name]; !ok {
			return nil, fmt.Errorf("action %s is defined but not discovered", d.Name)
		}
	}
	if len(enabled) != len(a.Definitions) {
		return nil, fmt.Errorf("discovery lists %d actions, %d are defined", len(enabled), len(a.Definitions))
	}
	return enabled, nil
}

// Run runs the action name on obj and returns the object it produces, as
// JSON.
func (c *Config) Run(kind, name string, obj any) ([]byte, error) {
	a, err := c.actions(kind)
	if err != nil {
		return nil, err
	}
	for _, d := range a.Definitions {
		if d.Name == name {
			return run(d.Action, obj)
		}
	}
	return nil, fmt.Errorf("no action %s for %s", name, kind)
}

// run executes script with obj (anything that encodes to a JSON object) as
// the global obj, and returns the table it returns, as JSON. Like Argo CD,
// it opens only the base, table, string, math and os libraries.
func run(script string, obj any) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	ls := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer ls.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath}, {lua.OsLibName, lua.OpenOs},
	} {
		ls.Push(ls.NewFunction(lib.open))
		ls.Push(lua.LString(lib.name))
		ls.Call(1, 0)
	}
	ls.SetGlobal("obj", toLua(ls, v))
	if err := ls.DoString(script); err != nil {
		return nil, err
	}
	ret := ls.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("the script returned %s, not a table", ret.Type())
	}
	return json.Marshal(fromLua(ret))
}

func toLua(ls *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := ls.NewTable()
		for _, e := range v {
			t.Append(toLua(ls, e))
		}
		return t
	case map[string]any:
		t := ls.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(ls, e))
		}
		return t
	}
	panic(fmt.Sprintf("unexpected JSON value %T", v))
}

// fromLua turns a Lua value back into JSON values: a table whose keys are
// 1..n is an array, any other table an object.
func fromLua(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if n := v.Len(); n > 0 {
			arr := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				arr = append(arr, fromLua(v.RawGetInt(i)))
			}
			return arr
		}
		obj := map[string]any{}
		v.ForEach(func(k, e lua.LValue) { obj[k.String()] = fromLua(e) })
		return obj
	}
	return nil
}
