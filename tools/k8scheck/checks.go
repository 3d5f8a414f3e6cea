package main

// Semantic checks: what the API server's validation would refuse although the document
// decodes into the type. Not the full server-side validation (that lives in
// k8s.io/kubernetes), but the mistakes hand-written manifests actually contain.

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
	"k8s.io/apimachinery/pkg/util/validation"
)

func checkObject(o *object) {
	m, ok := o.typed.(metav1.Object)
	if !ok {
		o.fail("no metadata")
		return
	}
	checkMeta(o, m)
	switch t := o.typed.(type) {
	case *appsv1.Deployment:
		checkSelector(o, "spec", t.Spec.Selector, t.Spec.Template.Labels)
		checkPodSpec(o, "spec.template.spec", &t.Spec.Template.Spec)
		if t.Spec.Replicas != nil && *t.Spec.Replicas < 0 {
			o.fail("spec.replicas: must be >= 0")
		}
	case *appsv1.StatefulSet:
		checkSelector(o, "spec", t.Spec.Selector, t.Spec.Template.Labels)
		var claims []string
		for _, c := range t.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		checkPodSpec(o, "spec.template.spec", &t.Spec.Template.Spec, claims...)
		if t.Spec.ServiceName == "" {
			o.fail("spec.serviceName: required for a StatefulSet")
		}
		for i := range t.Spec.VolumeClaimTemplates {
			checkPVCSpec(o, fmt.Sprintf("spec.volumeClaimTemplates[%d].spec", i), &t.Spec.VolumeClaimTemplates[i].Spec)
		}
	case *appsv1.DaemonSet:
		checkSelector(o, "spec", t.Spec.Selector, t.Spec.Template.Labels)
		checkPodSpec(o, "spec.template.spec", &t.Spec.Template.Spec)
	case *batchv1.Job:
		checkPodSpec(o, "spec.template.spec", &t.Spec.Template.Spec)
		if p := t.Spec.Template.Spec.RestartPolicy; p != corev1.RestartPolicyNever && p != corev1.RestartPolicyOnFailure {
			o.fail("spec.template.spec.restartPolicy: a Job needs Never or OnFailure, not %q", p)
		}
	case *batchv1.CronJob:
		if strings.TrimSpace(t.Spec.Schedule) == "" {
			o.fail("spec.schedule: required")
		}
		checkPodSpec(o, "spec.jobTemplate.spec.template.spec", &t.Spec.JobTemplate.Spec.Template.Spec)
	case *corev1.Pod:
		checkPodSpec(o, "spec", &t.Spec)
	case *corev1.Service:
		checkService(o, t)
	case *corev1.ConfigMap:
		for _, k := range sortedKeys(t.Data) {
			checkDataKey(o, "data", k)
		}
		for k := range t.BinaryData {
			checkDataKey(o, "binaryData", k)
		}
	case *corev1.Secret:
		for k := range t.Data {
			checkDataKey(o, "data", k)
		}
		for k := range t.StringData {
			checkDataKey(o, "stringData", k)
		}
	case *corev1.PersistentVolumeClaim:
		checkPVCSpec(o, "spec", &t.Spec)
	case *networkingv1.Ingress:
		checkIngress(o, t)
	case *networkingv1.NetworkPolicy:
		checkNetworkPolicy(o, t)
	case *policyv1.PodDisruptionBudget:
		if (t.Spec.MinAvailable == nil) == (t.Spec.MaxUnavailable == nil) {
			o.fail("spec: exactly one of minAvailable and maxUnavailable")
		}
		if t.Spec.Selector == nil {
			o.fail("spec.selector: required")
		} else {
			checkLabelSelector(o, "spec.selector", t.Spec.Selector)
		}
	case *autoscalingv2.HorizontalPodAutoscaler:
		checkHPA(o, t)
	case *rbacv1.Role:
		checkRules(o, t.Rules)
	case *rbacv1.ClusterRole:
		checkRules(o, t.Rules)
	case *rbacv1.RoleBinding:
		checkBinding(o, t.RoleRef, t.Subjects)
	case *rbacv1.ClusterRoleBinding:
		checkBinding(o, t.RoleRef, t.Subjects)
	}
}

func checkMeta(o *object, m metav1.Object) {
	name := m.GetName()
	switch {
	case name == "":
		o.fail("metadata.name: required")
	case o.gvk.Kind == "Namespace" || o.gvk.Kind == "Service":
		for _, e := range validation.IsDNS1123Label(name) {
			o.fail("metadata.name %q: %s", name, e)
		}
	default:
		for _, e := range validation.IsDNS1123Subdomain(name) {
			o.fail("metadata.name %q: %s", name, e)
		}
	}
	if ns := m.GetNamespace(); ns != "" {
		if !namespaced(o.gvk.Kind) {
			o.fail("metadata.namespace: %s is cluster-scoped", o.gvk.Kind)
		}
		for _, e := range validation.IsDNS1123Label(ns) {
			o.fail("metadata.namespace %q: %s", ns, e)
		}
	}
	checkLabels(o, "metadata.labels", m.GetLabels())
	for k := range m.GetAnnotations() {
		for _, e := range validation.IsQualifiedName(strings.ToLower(k)) {
			o.fail("metadata.annotations key %q: %s", k, e)
		}
	}
}

func checkLabels(o *object, path string, l map[string]string) {
	for _, k := range sortedKeys(l) {
		for _, e := range validation.IsQualifiedName(k) {
			o.fail("%s key %q: %s", path, k, e)
		}
		for _, e := range validation.IsValidLabelValue(l[k]) {
			o.fail("%s[%s] value %q: %s", path, k, l[k], e)
		}
	}
}

func checkLabelSelector(o *object, path string, sel *metav1.LabelSelector) labels.Selector {
	checkLabels(o, path+".matchLabels", sel.MatchLabels)
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		o.fail("%s: %v", path, err)
		return nil
	}
	return s
}

// checkSelector: a workload's selector is required, non-empty and must select its own
// pod template (the API server refuses the object otherwise).
func checkSelector(o *object, path string, sel *metav1.LabelSelector, tmpl map[string]string) {
	if sel == nil {
		o.fail("%s.selector: required", path)
		return
	}
	s := checkLabelSelector(o, path+".selector", sel)
	if s == nil {
		return
	}
	if s.Empty() {
		o.fail("%s.selector: empty selector", path)
	}
	checkLabels(o, path+".template.metadata.labels", tmpl)
	if !s.Matches(labels.Set(tmpl)) {
		o.fail("%s.selector %q does not match the template labels %v", path, s.String(), tmpl)
	}
}

func checkDataKey(o *object, path, key string) {
	for _, e := range validation.IsConfigMapKey(key) {
		o.fail("%s key %q: %s", path, key, e)
	}
}

// checkPodSpec; claims are a StatefulSet's volumeClaimTemplates, mountable like volumes.
func checkPodSpec(o *object, path string, spec *corev1.PodSpec, claims ...string) {
	if len(spec.Containers) == 0 {
		o.fail("%s.containers: at least one container", path)
	}
	volumes := map[string]bool{}
	for _, c := range claims {
		volumes[c] = true
	}
	for i, v := range spec.Volumes {
		vp := fmt.Sprintf("%s.volumes[%d]", path, i)
		for _, e := range validation.IsDNS1123Label(v.Name) {
			o.fail("%s.name %q: %s", vp, v.Name, e)
		}
		if volumes[v.Name] {
			o.fail("%s.name %q: duplicate", vp, v.Name)
		}
		volumes[v.Name] = true
		if countVolumeSources(v.VolumeSource) != 1 {
			o.fail("%s: exactly one volume source (emptyDir, configMap, secret, persistentVolumeClaim, ...)", vp)
		}
	}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for i := range all {
		c := &all[i]
		cp := fmt.Sprintf("%s.containers[%s]", path, c.Name)
		if i < len(spec.InitContainers) {
			cp = fmt.Sprintf("%s.initContainers[%s]", path, c.Name)
		}
		if names[c.Name] {
			o.fail("%s: duplicate container name", cp)
		}
		names[c.Name] = true
		checkContainer(o, cp, c, volumes, i >= len(spec.InitContainers))
	}
	switch spec.RestartPolicy {
	case "", corev1.RestartPolicyAlways, corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		o.fail("%s.restartPolicy: %q is not Always, OnFailure or Never", path, spec.RestartPolicy)
	}
	if sc := spec.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 &&
		sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
		o.fail("%s.securityContext: runAsNonRoot with runAsUser 0 can never start", path)
	}
}

func countVolumeSources(s corev1.VolumeSource) int {
	n := 0
	for _, set := range []bool{
		s.HostPath != nil, s.EmptyDir != nil, s.Secret != nil, s.ConfigMap != nil,
		s.PersistentVolumeClaim != nil, s.Projected != nil, s.DownwardAPI != nil, s.NFS != nil,
		s.CSI != nil, s.Ephemeral != nil, s.Image != nil,
	} {
		if set {
			n++
		}
	}
	if n == 0 {
		// one of the many cloud-specific sources; trust the strict decoder for those
		return 1
	}
	return n
}

func checkContainer(o *object, cp string, c *corev1.Container, volumes map[string]bool, regular bool) {
	for _, e := range validation.IsDNS1123Label(c.Name) {
		o.fail("%s.name %q: %s", cp, c.Name, e)
	}
	if strings.TrimSpace(c.Image) == "" {
		o.fail("%s.image: required", cp)
	}
	switch c.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		o.fail("%s.imagePullPolicy: %q is not Always, IfNotPresent or Never", cp, c.ImagePullPolicy)
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			o.fail("%s.ports: containerPort %d out of range", cp, p.ContainerPort)
		}
		if p.Name != "" {
			for _, e := range validation.IsValidPortName(p.Name) {
				o.fail("%s.ports name %q: %s", cp, p.Name, e)
			}
			if ports[p.Name] {
				o.fail("%s.ports name %q: duplicate", cp, p.Name)
			}
			ports[p.Name] = true
		}
		checkProtocol(o, cp+".ports", p.Protocol)
	}
	for _, e := range c.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			o.fail("%s.env %q: %s", cp, e.Name, msg)
		}
		if e.ValueFrom != nil && e.Value != "" {
			o.fail("%s.env %q: value and valueFrom are exclusive", cp, e.Name)
		}
		if vf := e.ValueFrom; vf != nil {
			if vf.SecretKeyRef != nil && (vf.SecretKeyRef.Name == "" || vf.SecretKeyRef.Key == "") {
				o.fail("%s.env %q: secretKeyRef needs name and key", cp, e.Name)
			}
			if vf.ConfigMapKeyRef != nil && (vf.ConfigMapKeyRef.Name == "" || vf.ConfigMapKeyRef.Key == "") {
				o.fail("%s.env %q: configMapKeyRef needs name and key", cp, e.Name)
			}
		}
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			o.fail("%s.volumeMounts: %q is not a volume of the pod", cp, m.Name)
		}
		if !strings.HasPrefix(m.MountPath, "/") {
			o.fail("%s.volumeMounts[%s].mountPath %q: must be absolute", cp, m.Name, m.MountPath)
		}
		if mounts[m.MountPath] {
			o.fail("%s.volumeMounts: mountPath %q used twice", cp, m.MountPath)
		}
		mounts[m.MountPath] = true
	}
	for _, pr := range []struct {
		name string
		p    *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if pr.p == nil {
			continue
		}
		if !regular {
			o.fail("%s.%s: init containers cannot have probes", cp, pr.name)
		}
		checkProbe(o, cp+"."+pr.name, pr.p, ports)
	}
	for res, lim := range c.Resources.Limits {
		if req, ok := c.Resources.Requests[res]; ok && req.Cmp(lim) > 0 {
			o.fail("%s.resources: request %s=%s above limit %s", cp, res, req.String(), lim.String())
		}
	}
}

func checkProbe(o *object, path string, p *corev1.Probe, ports map[string]bool) {
	n := 0
	if p.HTTPGet != nil {
		n++
		if !strings.HasPrefix(p.HTTPGet.Path, "/") {
			o.fail("%s.httpGet.path %q: must start with /", path, p.HTTPGet.Path)
		}
		checkPortRef(o, path+".httpGet.port", p.HTTPGet.Port, ports)
	}
	if p.TCPSocket != nil {
		n++
		checkPortRef(o, path+".tcpSocket.port", p.TCPSocket.Port, ports)
	}
	if p.Exec != nil {
		n++
		if len(p.Exec.Command) == 0 {
			o.fail("%s.exec.command: required", path)
		}
	}
	if p.GRPC != nil {
		n++
	}
	if n != 1 {
		o.fail("%s: exactly one handler (httpGet, tcpSocket, exec, grpc), found %d", path, n)
	}
	for _, v := range []struct {
		name string
		val  int32
		min  int32
	}{{"periodSeconds", p.PeriodSeconds, 0}, {"timeoutSeconds", p.TimeoutSeconds, 0},
		{"failureThreshold", p.FailureThreshold, 0}, {"successThreshold", p.SuccessThreshold, 0},
		{"initialDelaySeconds", p.InitialDelaySeconds, 0}} {
		if v.val < v.min {
			o.fail("%s.%s: must not be negative", path, v.name)
		}
	}
}

func checkPortRef(o *object, path string, p intstr.IntOrString, named map[string]bool) {
	if p.Type == intstr.String {
		if !named[p.StrVal] {
			o.fail("%s: named port %q is not declared by the container", path, p.StrVal)
		}
		return
	}
	if p.IntVal < 1 || p.IntVal > 65535 {
		o.fail("%s: %d out of range", path, p.IntVal)
	}
}

func checkProtocol(o *object, path string, p corev1.Protocol) {
	switch p {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		o.fail("%s: protocol %q is not TCP, UDP or SCTP", path, p)
	}
}

func checkService(o *object, s *corev1.Service) {
	switch s.Spec.Type {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	case corev1.ServiceTypeExternalName:
		if s.Spec.ExternalName == "" {
			o.fail("spec.externalName: required for type ExternalName")
		}
		return
	default:
		o.fail("spec.type %q: not ClusterIP, NodePort, LoadBalancer or ExternalName", s.Spec.Type)
	}
	if len(s.Spec.Ports) == 0 {
		o.fail("spec.ports: at least one port")
	}
	names := map[string]bool{}
	for i, p := range s.Spec.Ports {
		pp := fmt.Sprintf("spec.ports[%d]", i)
		if p.Port < 1 || p.Port > 65535 {
			o.fail("%s.port %d out of range", pp, p.Port)
		}
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			o.fail("%s.name: required when a Service has several ports", pp)
		}
		if p.Name != "" {
			for _, e := range validation.IsDNS1123Label(p.Name) {
				o.fail("%s.name %q: %s", pp, p.Name, e)
			}
			if names[p.Name] {
				o.fail("%s.name %q: duplicate", pp, p.Name)
			}
			names[p.Name] = true
		}
		checkProtocol(o, pp, p.Protocol)
	}
	checkLabels(o, "spec.selector", s.Spec.Selector)
}

func checkPVCSpec(o *object, path string, spec *corev1.PersistentVolumeClaimSpec) {
	if len(spec.AccessModes) == 0 {
		o.fail("%s.accessModes: at least one", path)
	}
	for _, m := range spec.AccessModes {
		switch m {
		case corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod:
		default:
			o.fail("%s.accessModes: %q is not a valid access mode", path, m)
		}
	}
	if _, ok := spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		o.fail("%s.resources.requests.storage: required", path)
	}
}

func checkIngress(o *object, ing *networkingv1.Ingress) {
	if ing.Spec.DefaultBackend == nil && len(ing.Spec.Rules) == 0 {
		o.fail("spec: needs rules or a defaultBackend")
	}
	for i, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			o.fail("spec.rules[%d].http: required", i)
			continue
		}
		for j, p := range r.HTTP.Paths {
			pp := fmt.Sprintf("spec.rules[%d].http.paths[%d]", i, j)
			if p.PathType == nil {
				o.fail("%s.pathType: required", pp)
			} else if *p.PathType != networkingv1.PathTypeExact && *p.PathType != networkingv1.PathTypePrefix &&
				*p.PathType != networkingv1.PathTypeImplementationSpecific {
				o.fail("%s.pathType %q: not Exact, Prefix or ImplementationSpecific", pp, *p.PathType)
			}
			if !strings.HasPrefix(p.Path, "/") {
				o.fail("%s.path %q: must start with /", pp, p.Path)
			}
			if p.Backend.Service == nil || p.Backend.Service.Name == "" {
				o.fail("%s.backend.service.name: required", pp)
			} else if (p.Backend.Service.Port.Name == "") == (p.Backend.Service.Port.Number == 0) {
				o.fail("%s.backend.service.port: exactly one of name and number", pp)
			}
		}
	}
	for i, t := range ing.Spec.TLS {
		if t.SecretName == "" {
			o.fail("spec.tls[%d].secretName: required", i)
		}
	}
}

func checkNetworkPolicy(o *object, np *networkingv1.NetworkPolicy) {
	checkLabelSelector(o, "spec.podSelector", &np.Spec.PodSelector)
	for _, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			o.fail("spec.policyTypes: %q is not Ingress or Egress", t)
		}
	}
	peers := func(path string, list []networkingv1.NetworkPolicyPeer) {
		for i, p := range list {
			pp := fmt.Sprintf("%s[%d]", path, i)
			if p.IPBlock != nil && (p.PodSelector != nil || p.NamespaceSelector != nil) {
				o.fail("%s: ipBlock cannot be combined with selectors", pp)
			}
			if p.PodSelector != nil {
				checkLabelSelector(o, pp+".podSelector", p.PodSelector)
			}
			if p.NamespaceSelector != nil {
				checkLabelSelector(o, pp+".namespaceSelector", p.NamespaceSelector)
			}
		}
	}
	for i, r := range np.Spec.Ingress {
		peers(fmt.Sprintf("spec.ingress[%d].from", i), r.From)
		for _, p := range r.Ports {
			if p.Protocol != nil {
				checkProtocol(o, fmt.Sprintf("spec.ingress[%d].ports", i), *p.Protocol)
			}
		}
	}
	for i, r := range np.Spec.Egress {
		peers(fmt.Sprintf("spec.egress[%d].to", i), r.To)
	}
}

func checkHPA(o *object, h *autoscalingv2.HorizontalPodAutoscaler) {
	ref := h.Spec.ScaleTargetRef
	if ref.Kind == "" || ref.Name == "" {
		o.fail("spec.scaleTargetRef: kind and name required")
	}
	if h.Spec.MaxReplicas < 1 {
		o.fail("spec.maxReplicas: must be >= 1")
	}
	if h.Spec.MinReplicas != nil && (*h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas) {
		o.fail("spec.minReplicas: must be in 1..maxReplicas")
	}
	for i, m := range h.Spec.Metrics {
		mp := fmt.Sprintf("spec.metrics[%d]", i)
		switch m.Type {
		case autoscalingv2.ResourceMetricSourceType:
			if m.Resource == nil {
				o.fail("%s.resource: required for type Resource", mp)
			} else if m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization == nil {
				o.fail("%s.resource.target.averageUtilization: required for type Utilization", mp)
			}
		case autoscalingv2.PodsMetricSourceType, autoscalingv2.ObjectMetricSourceType,
			autoscalingv2.ExternalMetricSourceType, autoscalingv2.ContainerResourceMetricSourceType:
		default:
			o.fail("%s.type %q: not Resource, Pods, Object, External or ContainerResource", mp, m.Type)
		}
	}
}

var knownVerbs = map[string]bool{
	"get": true, "list": true, "watch": true, "create": true, "update": true, "patch": true,
	"delete": true, "deletecollection": true, "*": true, "use": true, "bind": true,
	"escalate": true, "impersonate": true, "approve": true, "sign": true,
}

func checkRules(o *object, rules []rbacv1.PolicyRule) {
	for i, r := range rules {
		rp := fmt.Sprintf("rules[%d]", i)
		if len(r.Verbs) == 0 {
			o.fail("%s.verbs: at least one", rp)
		}
		for _, v := range r.Verbs {
			if !knownVerbs[v] {
				o.fail("%s.verbs: %q is not a Kubernetes verb", rp, v)
			}
		}
		if len(r.NonResourceURLs) == 0 && len(r.Resources) == 0 {
			o.fail("%s.resources: at least one", rp)
		}
		if len(r.Resources) > 0 && r.APIGroups == nil {
			o.fail("%s.apiGroups: required with resources (\"\" is the core group)", rp)
		}
	}
}

func checkBinding(o *object, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup != rbacv1.GroupName {
		o.fail("roleRef.apiGroup: must be %s", rbacv1.GroupName)
	}
	if ref.Kind != "Role" && ref.Kind != "ClusterRole" {
		o.fail("roleRef.kind %q: Role or ClusterRole", ref.Kind)
	}
	if ref.Name == "" {
		o.fail("roleRef.name: required")
	}
	for i, s := range subjects {
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.APIGroup != "" {
				o.fail("subjects[%d].apiGroup: must be empty for a ServiceAccount", i)
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
		default:
			o.fail("subjects[%d].kind %q: ServiceAccount, User or Group", i, s.Kind)
		}
		if s.Name == "" {
			o.fail("subjects[%d].name: required", i)
		}
	}
}
