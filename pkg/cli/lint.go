package cli

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	sigsyaml "sigs.k8s.io/yaml"
)

type lintOptions struct {
	files    []string
	external []string
}

func newLintCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := lintOptions{}
	cmd := &cobra.Command{
		Use:   "lint -f FILE [-f FILE ...]",
		Short: "Check Rollout, analysis and experiment manifests offline",
		Long: `lint checks manifests before they reach a cluster, without one:

  - every Rollout, AnalysisTemplate, ClusterAnalysisTemplate, Experiment and
    AnalysisRun against the schema and the validation rules of its
    CustomResourceDefinition, with the API server's own messages (unknown
    fields included);
  - what admission cannot see: the Services, Deployment, routes, Ingresses,
    VirtualServices and DestinationRules a Rollout names exist in the files
    given and suit its traffic router; the analysis templates Rollouts and
    Experiments reference exist and get every argument they declare without
    a value; metric conditions compile.

Objects are looked up in all the files given together. An object that lives
elsewhere (already in the cluster, applied by another tool) is named with
--external KIND or --external KIND/NAME.

Each problem is printed to standard output as FILE:LINE: KIND/NAME: MESSAGE.
The exit code is 1 when there is any problem, 0 otherwise.`,
		Example: `  # Check an application's manifests
  kubectl rollouts lint -f rollout.yaml -f services.yaml -f analysis.yaml

  # Every manifest of a directory, ClusterAnalysisTemplates managed elsewhere
  kubectl rollouts lint -f deploy/ --external ClusterAnalysisTemplate

  # Rendered manifests from standard input
  kustomize build overlays/prod | kubectl rollouts lint -f -`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(streams)
		},
	}
	cmd.Flags().StringArrayVarP(&o.files, "filename", "f", nil, `file or directory of YAML or JSON manifests ("-" for standard input); repeatable`)
	cmd.Flags().StringSliceVar(&o.external, "external", nil, "KIND or KIND/NAME of objects that exist outside the files given (e.g. ClusterAnalysisTemplate, Service/payments); repeatable")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func (o *lintOptions) run(streams genericiooptions.IOStreams) error {
	external, err := parseExternal(o.external)
	if err != nil {
		return err
	}
	schemas, err := loadCRDSchemas()
	if err != nil {
		return err
	}
	inputs, err := readLintInputs(o.files, streams.In)
	if err != nil {
		return err
	}
	l := &linter{schemas: schemas, external: external}
	for _, in := range inputs {
		l.read(in.name, in.data)
	}
	l.check()
	return l.report(streams.Out, inputs)
}

type lintInput struct {
	name string
	data []byte
}

// readLintInputs reads every file named, a directory's *.yaml, *.yml and
// *.json files (not its subdirectories), and standard input for "-".
func readLintInputs(names []string, stdin io.Reader) ([]lintInput, error) {
	var out []lintInput
	readStdin := false
	for _, name := range names {
		if name == "-" {
			if readStdin {
				return nil, fmt.Errorf(`standard input ("-f -") can be read only once`)
			}
			readStdin = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			out = append(out, lintInput{"<stdin>", data})
			continue
		}
		files := []string{name}
		if fi, err := os.Stat(name); err == nil && fi.IsDir() {
			entries, err := os.ReadDir(name)
			if err != nil {
				return nil, err
			}
			files = files[:0]
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					files = append(files, filepath.Join(name, e.Name()))
				}
			}
		}
		for _, f := range files {
			if slices.ContainsFunc(out, func(in lintInput) bool { return in.name == f }) {
				continue // read once, or its objects would clash with themselves
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, lintInput{f, data})
		}
	}
	return out, nil
}

// lintObject is one object of the manifests: as kubectl would send it (raw),
// and as written (node), to find the line of a field.
type lintObject struct {
	file string
	// base is added to the lines of node: the line before its document.
	base      int
	node      *yaml.Node
	raw       map[string]any
	gvk       schema.GroupVersionKind
	namespace string
	name      string
	// typed is the object decoded into its Go type after defaulting, for
	// the kinds of this project; nil when it could not be decoded.
	typed any
}

func (o *lintObject) String() string { return o.gvk.Kind + "/" + o.name }

// line returns the line of the field at path (as a field.Path prints it:
// spec.steps[2].setWeight, metadata.labels[app]), or of its deepest
// ancestor that was written.
func (o *lintObject) line(path string) int {
	return o.base + fieldNode(o.node, path).Line
}

// fieldNode walks a field path down a YAML node. Map keys may contain dots
// (labels, annotations): the longest key that fits is taken. It returns the
// key node of the deepest field found (the line a person looks at), or the
// item of a list.
func fieldNode(n *yaml.Node, path string) *yaml.Node {
	at := n
	for path != "" {
		for n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		path = strings.TrimPrefix(path, ".")
		if strings.HasPrefix(path, "[") {
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return at
			}
			tok := path[1:end]
			path = path[end+1:]
			if i, err := strconv.Atoi(tok); err == nil && n.Kind == yaml.SequenceNode {
				if i < 0 || i >= len(n.Content) {
					return at
				}
				n, at = n.Content[i], n.Content[i]
				continue
			}
			key, value := mappingKey(n, func(k string) bool { return k == tok })
			if key == nil {
				return at
			}
			n, at = value, key
			continue
		}
		rest := path
		key, value := mappingKey(n, func(k string) bool {
			r, ok := strings.CutPrefix(rest, k)
			return ok && (r == "" || r[0] == '.' || r[0] == '[')
		})
		if key == nil {
			return at
		}
		path = path[len(key.Value):]
		n, at = value, key
	}
	return at
}

// mappingKey finds the longest key of a mapping node that match accepts.
func mappingKey(n *yaml.Node, match func(string) bool) (key, value *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if match(k.Value) && (key == nil || len(k.Value) > len(key.Value)) {
			key, value = k, n.Content[i+1]
		}
	}
	return key, value
}

// lintProblem is one finding, at a line of a file.
type lintProblem struct {
	file    string
	line    int
	object  string
	message string
}

func (p lintProblem) String() string {
	if p.object == "" {
		return fmt.Sprintf("%s:%d: %s", p.file, p.line, p.message)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.file, p.line, p.object, p.message)
}

// linter holds the objects of every file and the problems found in them.
type linter struct {
	schemas  crdSchemas
	external externalObjects
	objects  []*lintObject
	problems []lintProblem
}

// add records a problem at the line of the field at path of o ("" for the
// object itself).
func (l *linter) add(o *lintObject, path, msg string) {
	l.problems = append(l.problems, lintProblem{file: o.file, line: o.line(path), object: o.String(), message: msg})
}

// problem records a problem whose message starts with the field's path, as
// the API server's do.
func (l *linter) problem(o *lintObject, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	l.add(o, path, msg)
}

// yamlLine finds the line number in a YAML parser's error message.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// read splits a file into its documents, the way kubectl does (a line
// starting with "---" and nothing else ends a document), and adds their
// objects. The items of a List are objects of their own.
func (l *linter) read(file string, data []byte) {
	base := 0
	for _, doc := range splitYAMLDocuments(data) {
		l.readDocument(file, base, doc)
		base += bytes.Count(doc, []byte("\n")) + 1
	}
}

func splitYAMLDocuments(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := off + end + 1
		if end < 0 {
			next = len(data)
		}
		line := data[off:next]
		if rest, ok := bytes.CutPrefix(line, []byte("---")); ok && len(bytes.TrimSpace(rest)) == 0 {
			docs = append(docs, data[start:off])
			start = next
		}
		off = next
	}
	return append(docs, data[start:])
}

func (l *linter) readDocument(file string, base int, doc []byte) {
	fail := func(line int, format string, args ...any) {
		l.problems = append(l.problems, lintProblem{file: file, line: base + line, message: fmt.Sprintf(format, args...)})
	}
	// kubectl's YAML reader (YAML 1.1 scalars: yes, on, …) decides the
	// values, and its errors point closer to the mistake than yaml.v3's.
	js, err := sigsyaml.YAMLToJSON(doc)
	if err != nil {
		line := 1
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = strings.TrimPrefix(msg, m[0])
		}
		fail(line, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
		return
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		fail(1, "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	if len(root.Content) == 0 || root.Content[0].Tag == "!!null" {
		return // only comments
	}
	var raw any
	if err := utiljson.Unmarshal(js, &raw); err != nil {
		fail(root.Content[0].Line, "invalid YAML: %v", err)
		return
	}
	l.addObject(file, base, root.Content[0], raw, fail)
}

func (l *linter) addObject(file string, base int, node *yaml.Node, raw any, fail func(int, string, ...any)) {
	m, ok := raw.(map[string]any)
	if !ok {
		fail(node.Line, "a document must be a Kubernetes object, a mapping with apiVersion and kind")
		return
	}
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	switch {
	case apiVersion == "":
		fail(node.Line, "apiVersion not set")
		return
	case err != nil:
		fail(node.Line, "apiVersion %q: %v", apiVersion, err)
		return
	case kind == "":
		fail(node.Line, "kind not set")
		return
	}
	if items, ok := m["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		_, itemsNode := mappingKey(node, func(k string) bool { return k == "items" })
		for i, item := range items {
			n := node
			if itemsNode != nil && itemsNode.Kind == yaml.SequenceNode && i < len(itemsNode.Content) {
				n = itemsNode.Content[i]
			}
			l.addObject(file, base, n, item, fail)
		}
		return
	}
	o := &lintObject{file: file, base: base, node: node, raw: m, gvk: gv.WithKind(kind)}
	if md, ok := m["metadata"].(map[string]any); ok {
		o.name, _ = md["name"].(string)
		o.namespace, _ = md["namespace"].(string)
	}
	l.objects = append(l.objects, o)
	l.checkDuplicateKeys(o, node)
}

// checkDuplicateKeys: kubectl's strict decoding refuses a field written
// twice; YAML parsers keep the last.
func (l *linter) checkDuplicateKeys(o *lintObject, n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				l.problems = append(l.problems, lintProblem{file: o.file, line: o.base + k.Line, object: o.String(), message: fmt.Sprintf("duplicate field %q", k.Value)})
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		l.checkDuplicateKeys(o, c)
	}
}

// report prints the problems of each file, in the order the files were
// given, by line; a file without any gets a one-line summary.
func (l *linter) report(w io.Writer, inputs []lintInput) error {
	perFile := map[string][]lintProblem{}
	for _, p := range l.problems {
		perFile[p.file] = append(perFile[p.file], p)
	}
	objects := map[string]int{}
	for _, o := range l.objects {
		objects[o.file]++
	}
	var b strings.Builder
	for _, in := range inputs {
		probs := perFile[in.name]
		if len(probs) == 0 {
			fmt.Fprintf(&b, "%s: %s, no problems\n", in.name, plural(objects[in.name], "object"))
			continue
		}
		slices.SortFunc(probs, func(a, b lintProblem) int {
			return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.object, b.object), cmp.Compare(a.message, b.message))
		})
		for _, p := range probs {
			b.WriteString(p.String() + "\n")
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if n := len(l.problems); n > 0 {
		return fmt.Errorf("%s in %s", plural(n, "problem"), plural(len(perFile), "file"))
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
