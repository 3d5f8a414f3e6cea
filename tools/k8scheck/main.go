// k8scheck validates rendered Kubernetes manifests strictly against the Kubernetes API
// types, offline, without a cluster. It is a test tool (tests/test_deploy_manifests.py),
// not part of the product.
//
//	kubectl kustomize k8s/overlays/dev | k8scheck            # reads stdin
//	k8scheck rendered.yaml other.yaml                         # or files
//
// Every document must be a built-in kind of a group this tool knows, or a custom kind of
// the minimal CRDs embedded from crds/ (custom.go: checked against their schema). It is decoded into
// the k8s.io/api Go type with the same strict decoder the API server uses for
// `kubectl apply --validate=strict` (sigs.k8s.io/json: case-sensitive, unknown fields
// and duplicate fields are errors, wrong types are errors), then checked for the
// semantic mistakes a schema cannot catch (names, label syntax, selectors that do not
// select their own template, probes without a handler, mounts of undeclared volumes,
// requests above limits, references to objects that are not in the rendered set, ...).
//
// Output: one line per object ("ok" or "FAIL" with every problem), a summary line, exit
// status 1 when anything failed, 2 on usage or input errors.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// customKinds: the operator kinds of crds/ (custom.go), loaded once at start.
var customKinds map[schema.GroupVersionKind]*customKind

// object is one decoded document: its identity and the typed value.
type object struct {
	source string // file:document-number, for messages
	gvk    schema.GroupVersionKind
	ns     string
	name   string
	typed  runtime.Object
	probs  []string
}

func (o *object) id() string {
	if o.ns != "" {
		return fmt.Sprintf("%s %s/%s", o.gvk.Kind, o.ns, o.name)
	}
	return fmt.Sprintf("%s %s", o.gvk.Kind, o.name)
}

func (o *object) fail(format string, args ...any) {
	o.probs = append(o.probs, fmt.Sprintf(format, args...))
}

func main() {
	quiet := flag.Bool("q", false, "print only failures and the summary")
	noRefs := flag.Bool("no-refs", false, "skip the checks of references between objects")
	var external, runtimePods listFlag
	flag.Var(&external, "external", "KIND/NAME of an object that exists outside the rendered set\n"+
		"(made beforehand, e.g. a Secret in production); repeatable")
	flag.Var(&runtimePods, "runtime-pods", "label selector of pods created at run time (not by a template\n"+
		"in the set), e.g. app=batch: selectors matching them are not dangling; repeatable")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: k8scheck [-q] [-no-refs] [FILE...]   (stdin when no FILE)\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	scheme := newScheme()
	var err error
	if customKinds, err = loadCustomKinds(); err != nil {
		fmt.Fprintf(os.Stderr, "k8scheck: the embedded CRDs: %v\n", err)
		os.Exit(2)
	}
	var objs []*object
	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	for _, path := range inputs {
		var r io.Reader
		if path == "-" {
			r = os.Stdin
			path = "<stdin>"
		} else {
			f, err := os.Open(path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
				os.Exit(2)
			}
			defer f.Close()
			r = f
		}
		got, err := decodeAll(scheme, path, r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %s: %v\n", path, err)
			os.Exit(2)
		}
		objs = append(objs, got...)
	}
	if len(objs) == 0 {
		fmt.Fprintln(os.Stderr, "k8scheck: no objects in the input")
		os.Exit(2)
	}

	for _, o := range objs {
		if o.typed != nil {
			checkObject(o)
		}
	}
	if !*noRefs {
		if err := checkReferences(objs, external, runtimePods); err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
			os.Exit(2)
		}
	}
	checkDuplicates(objs)

	failed := 0
	for _, o := range objs {
		if len(o.probs) == 0 {
			if !*quiet {
				fmt.Printf("ok    %-28s %s\n", o.gvk.GroupVersion().String(), o.id())
			}
			continue
		}
		failed++
		fmt.Printf("FAIL  %-28s %s (%s)\n", o.gvk.GroupVersion().String(), o.id(), o.source)
		for _, p := range o.probs {
			fmt.Printf("        - %s\n", p)
		}
	}
	fmt.Printf("k8scheck: %d objects, %d failed\n", len(objs), failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// decodeAll splits a multi-document YAML stream and decodes each document strictly.
func decodeAll(scheme *runtime.Scheme, path string, r io.Reader) ([]*object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []*object
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %v", n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		objs = append(objs, decodeOne(scheme, fmt.Sprintf("%s:%d", path, n), doc))
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func decodeOne(scheme *runtime.Scheme, source string, doc []byte) *object {
	o := &object{source: source}
	// YAMLToJSONStrict: duplicate keys in the YAML are errors too.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		o.gvk.Kind = "?"
		o.name = "?"
		o.fail("not valid YAML: %v", err)
		return o
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &meta); err != nil {
		o.gvk.Kind = "?"
		o.name = "?"
		o.fail("cannot read apiVersion/kind/metadata: %v", err)
		return o
	}
	gv, err := schema.ParseGroupVersion(meta.APIVersion)
	if err != nil || meta.APIVersion == "" || meta.Kind == "" {
		o.gvk.Kind = meta.Kind
		o.name = meta.Metadata.Name
		o.fail("apiVersion %q / kind %q: both are required and apiVersion must be group/version", meta.APIVersion, meta.Kind)
		return o
	}
	o.gvk = gv.WithKind(meta.Kind)
	o.name = meta.Metadata.Name
	o.ns = meta.Metadata.Namespace
	typed, err := scheme.New(o.gvk)
	if err != nil {
		if ck := customKinds[o.gvk]; ck != nil {
			decodeCustom(o, ck, js)
			return o
		}
		o.fail("%s is neither a built-in kind nor a custom kind of crds/ (typo in apiVersion or kind?)", o.gvk)
		return o
	}
	// The API server's strict decoding: unknown fields, duplicate fields and fields in the
	// wrong case are errors; a wrong type is a hard error.
	strictErrs, err := kjson.UnmarshalStrict(js, typed, kjson.DisallowUnknownFields)
	if err != nil {
		o.fail("does not match the %s type: %v", o.gvk.Kind, err)
		return o
	}
	for _, e := range strictErrs {
		o.fail("strict decoding: %v", e)
	}
	o.typed = typed
	return o
}

// checkDuplicates: two objects with one identity would make `kubectl apply` keep only one.
func checkDuplicates(objs []*object) {
	seen := map[string]*object{}
	for _, o := range objs {
		key := o.gvk.GroupKind().String() + " " + o.ns + "/" + o.name
		if prev, ok := seen[key]; ok {
			o.fail("duplicate of the object at %s", prev.source)
			continue
		}
		seen[key] = o
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
