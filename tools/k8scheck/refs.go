package main

// References between the objects of one rendered set: a Deployment mounting a ConfigMap
// that kustomize renamed, a Service selecting no pod, an Ingress pointing at a port the
// Service does not have. Each is accepted by the API server and breaks at run time.

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podTemplate struct {
	owner  *object
	labels map[string]string
	spec   *corev1.PodSpec
}

type index struct {
	byKind    map[string]*object // "Kind ns/name"
	templates map[string][]podTemplate
	external  map[string]bool // "Kind/name": exists outside the set, in any namespace
	runtime   []labels.Selector
}

func (ix *index) has(kind, ns, name string) bool {
	_, ok := ix.byKind[kind+" "+ns+"/"+name]
	return ok || ix.external[kind+"/"+name]
}

// selectsSomething: the selector matches a pod template of the set or pods made at run time.
func (ix *index) selectsSomething(ns string, sel labels.Selector) bool {
	if len(ix.selected(ns, sel)) > 0 {
		return true
	}
	for _, r := range ix.runtime {
		if reqs, ok := r.Requirements(); ok {
			set := labels.Set{}
			for _, req := range reqs {
				if v := req.Values().List(); len(v) == 1 {
					set[req.Key()] = v[0]
				}
			}
			if sel.Matches(set) {
				return true
			}
		}
	}
	return false
}

func (ix *index) get(kind, ns, name string) *object { return ix.byKind[kind+" "+ns+"/"+name] }

func (ix *index) selected(ns string, sel labels.Selector) []podTemplate {
	var out []podTemplate
	for _, t := range ix.templates[ns] {
		if sel.Matches(labels.Set(t.labels)) {
			out = append(out, t)
		}
	}
	return out
}

func checkReferences(objs []*object, external, runtimePods []string) error {
	ix := &index{byKind: map[string]*object{}, templates: map[string][]podTemplate{}, external: map[string]bool{}}
	for _, e := range external {
		if !strings.Contains(e, "/") {
			return fmt.Errorf("-external %q: want KIND/NAME", e)
		}
		ix.external[e] = true
	}
	for _, r := range runtimePods {
		sel, err := labels.Parse(r)
		if err != nil {
			return fmt.Errorf("-runtime-pods %q: %v", r, err)
		}
		ix.runtime = append(ix.runtime, sel)
	}
	for _, o := range objs {
		if o.typed == nil {
			continue
		}
		ix.byKind[o.gvk.Kind+" "+o.ns+"/"+o.name] = o
		if tmpl := templateOf(o); tmpl != nil {
			ix.templates[o.ns] = append(ix.templates[o.ns], podTemplate{o, tmpl.Labels, &tmpl.Spec})
		}
	}
	for _, o := range objs {
		if o.typed == nil {
			continue
		}
		if tmpl := templateOf(o); tmpl != nil {
			checkPodRefs(o, ix, &tmpl.Spec)
		}
		switch t := o.typed.(type) {
		case *corev1.Service:
			checkServiceRefs(o, ix, t)
		case *networkingv1.Ingress:
			checkIngressRefs(o, ix, t)
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := t.Spec.ScaleTargetRef
			if !ix.has(ref.Kind, o.ns, ref.Name) {
				o.fail("spec.scaleTargetRef: no %s %q in the rendered set", ref.Kind, ref.Name)
			}
		case *policyv1.PodDisruptionBudget:
			if t.Spec.Selector != nil {
				if sel, err := metav1.LabelSelectorAsSelector(t.Spec.Selector); err == nil && !ix.selectsSomething(o.ns, sel) {
					o.fail("spec.selector %q selects no pod template in namespace %q", sel, o.ns)
				}
			}
		case *networkingv1.NetworkPolicy:
			sel, err := metav1.LabelSelectorAsSelector(&t.Spec.PodSelector)
			if err == nil && !sel.Empty() && !ix.selectsSomething(o.ns, sel) {
				o.fail("spec.podSelector %q selects no pod template in namespace %q", sel, o.ns)
			}
		case *rbacv1.RoleBinding:
			if t.RoleRef.Kind == "Role" && !ix.has("Role", o.ns, t.RoleRef.Name) {
				o.fail("roleRef: no Role %q in namespace %q", t.RoleRef.Name, o.ns)
			}
			for _, s := range t.Subjects {
				ns := s.Namespace
				if ns == "" {
					ns = o.ns
				}
				if s.Kind == rbacv1.ServiceAccountKind && !ix.has("ServiceAccount", ns, s.Name) {
					o.fail("subjects: no ServiceAccount %s/%s in the rendered set", ns, s.Name)
				}
			}
		}
	}
	return nil
}

func templateOf(o *object) *corev1.PodTemplateSpec {
	switch t := o.typed.(type) {
	case *appsv1.Deployment:
		return &t.Spec.Template
	case *appsv1.StatefulSet:
		return &t.Spec.Template
	case *appsv1.DaemonSet:
		return &t.Spec.Template
	case *batchv1.Job:
		return &t.Spec.Template
	case *batchv1.CronJob:
		return &t.Spec.JobTemplate.Spec.Template
	}
	return nil
}

func optional(b *bool) bool { return b != nil && *b }

func checkPodRefs(o *object, ix *index, spec *corev1.PodSpec) {
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" && !ix.has("ServiceAccount", o.ns, sa) {
		o.fail("serviceAccountName: no ServiceAccount %q in namespace %q", sa, o.ns)
	}
	for _, v := range spec.Volumes {
		switch {
		case v.ConfigMap != nil && !optional(v.ConfigMap.Optional) && !ix.has("ConfigMap", o.ns, v.ConfigMap.Name):
			o.fail("volume %q: no ConfigMap %q in namespace %q", v.Name, v.ConfigMap.Name, o.ns)
		case v.Secret != nil && !optional(v.Secret.Optional) && !ix.has("Secret", o.ns, v.Secret.SecretName):
			o.fail("volume %q: no Secret %q in namespace %q", v.Name, v.Secret.SecretName, o.ns)
		case v.PersistentVolumeClaim != nil && !ix.has("PersistentVolumeClaim", o.ns, v.PersistentVolumeClaim.ClaimName):
			o.fail("volume %q: no PersistentVolumeClaim %q in namespace %q", v.Name, v.PersistentVolumeClaim.ClaimName, o.ns)
		}
		if v.ConfigMap != nil {
			checkItems(o, ix, "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items)
		}
		if v.Secret != nil {
			checkItems(o, ix, "Secret", v.Secret.SecretName, v.Secret.Items)
		}
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil && !optional(ef.ConfigMapRef.Optional) && !ix.has("ConfigMap", o.ns, ef.ConfigMapRef.Name) {
				o.fail("container %s envFrom: no ConfigMap %q", c.Name, ef.ConfigMapRef.Name)
			}
			if ef.SecretRef != nil && !optional(ef.SecretRef.Optional) && !ix.has("Secret", o.ns, ef.SecretRef.Name) {
				o.fail("container %s envFrom: no Secret %q", c.Name, ef.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !optional(r.Optional) {
				checkKey(o, ix, "ConfigMap", r.Name, r.Key, fmt.Sprintf("container %s env %s", c.Name, e.Name))
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && !optional(r.Optional) {
				checkKey(o, ix, "Secret", r.Name, r.Key, fmt.Sprintf("container %s env %s", c.Name, e.Name))
			}
		}
	}
}

// dataKeys lists the keys of a ConfigMap or Secret of the set.
func dataKeys(obj *object) map[string]bool {
	keys := map[string]bool{}
	switch t := obj.typed.(type) {
	case *corev1.ConfigMap:
		for k := range t.Data {
			keys[k] = true
		}
		for k := range t.BinaryData {
			keys[k] = true
		}
	case *corev1.Secret:
		for k := range t.Data {
			keys[k] = true
		}
		for k := range t.StringData {
			keys[k] = true
		}
	}
	return keys
}

func checkKey(o *object, ix *index, kind, name, key, where string) {
	obj := ix.get(kind, o.ns, name)
	if obj == nil {
		if !ix.external[kind+"/"+name] {
			o.fail("%s: no %s %q in namespace %q", where, kind, name, o.ns)
		}
		return
	}
	if !dataKeys(obj)[key] {
		o.fail("%s: %s %q has no key %q", where, kind, name, key)
	}
}

func checkItems(o *object, ix *index, kind, name string, items []corev1.KeyToPath) {
	obj := ix.get(kind, o.ns, name)
	if obj == nil {
		return
	}
	keys := dataKeys(obj)
	for _, it := range items {
		if !keys[it.Key] {
			o.fail("volume items: %s %q has no key %q", kind, name, it.Key)
		}
	}
}

func checkServiceRefs(o *object, ix *index, s *corev1.Service) {
	if len(s.Spec.Selector) == 0 || s.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	pods := ix.selected(o.ns, labels.SelectorFromSet(s.Spec.Selector))
	if len(pods) == 0 {
		o.fail("spec.selector %v selects no pod template in namespace %q", s.Spec.Selector, o.ns)
		return
	}
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, t := range pods {
			if !podHasPort(t.spec, target) {
				o.fail("spec.ports[%s]: targetPort %s is not a port of %s", p.Name, target.String(), t.owner.id())
			}
		}
	}
}

func podHasPort(spec *corev1.PodSpec, p intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return true
			}
		}
	}
	// a numeric targetPort need not be declared by the container
	return p.Type == intstr.Int
}

func checkIngressRefs(o *object, ix *index, ing *networkingv1.Ingress) {
	var backends []*networkingv1.IngressServiceBackend
	if ing.Spec.DefaultBackend != nil && ing.Spec.DefaultBackend.Service != nil {
		backends = append(backends, ing.Spec.DefaultBackend.Service)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for i := range r.HTTP.Paths {
			if r.HTTP.Paths[i].Backend.Service != nil {
				backends = append(backends, r.HTTP.Paths[i].Backend.Service)
			}
		}
	}
	for _, b := range backends {
		svcObj := ix.get("Service", o.ns, b.Name)
		if svcObj == nil {
			o.fail("backend: no Service %q in namespace %q", b.Name, o.ns)
			continue
		}
		svc := svcObj.typed.(*corev1.Service)
		found := false
		for _, p := range svc.Spec.Ports {
			if (b.Port.Name != "" && p.Name == b.Port.Name) || (b.Port.Number != 0 && p.Port == b.Port.Number) {
				found = true
			}
		}
		if !found {
			o.fail("backend: Service %q has no port %s", b.Name, portString(b.Port))
		}
	}
}

func portString(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprint(p.Number)
}
