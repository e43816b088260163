package harness

import (
	"html"
	"net/url"
	"regexp"
	"strings"
)

// Form is an HTML form found on a page: enough of one to submit it the way a
// browser does (hidden inputs included).
type Form struct {
	ID     string
	Method string // upper case; GET when absent
	Action string // absolute
	// Origin is the origin of the page the form is on, which a browser
	// sends as the submission's Origin (the daemon's sign-out checks it).
	Origin string
	Fields url.Values
	// Buttons are submit buttons (name → value) that belong to the form.
	Buttons map[string]string
}

var (
	tagRe  = regexp.MustCompile(`(?is)<(/?)(form|input|button|textarea)\b([^>]*)>`)
	attrRe = regexp.MustCompile(`(?s)([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?`)
)

func parseAttrs(s string) map[string]string {
	attrs := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		name := strings.ToLower(m[1])
		val := m[2] + m[3] + m[4]
		if _, dup := attrs[name]; !dup {
			attrs[name] = html.UnescapeString(val)
		}
	}
	return attrs
}

// ParseForms returns the forms of an HTML page, resolving actions against
// base. Inputs and buttons outside a form that name one with form="id" are
// attached to it (the provider's logout page does this).
func ParseForms(body string, base *url.URL) []*Form {
	var forms []*Form
	byID := map[string]*Form{}
	var cur *Form
	type orphan struct {
		formID string
		attrs  map[string]string
		tag    string
	}
	var orphans []orphan
	add := func(f *Form, tag string, a map[string]string) {
		name := a["name"]
		typ := strings.ToLower(a["type"])
		switch {
		case tag == "button" || typ == "submit":
			if name != "" {
				f.Buttons[name] = a["value"]
			}
		case name == "":
		case (typ == "checkbox" || typ == "radio") && !hasAttr(a, "checked"):
		default:
			f.Fields.Add(name, a["value"])
		}
	}
	for _, m := range tagRe.FindAllStringSubmatch(body, -1) {
		closing, tag, attrs := m[1] == "/", strings.ToLower(m[2]), parseAttrs(m[3])
		if tag == "form" {
			if closing {
				cur = nil
				continue
			}
			method := strings.ToUpper(attrs["method"])
			if method == "" {
				method = "GET"
			}
			action := base.String()
			if a, ok := attrs["action"]; ok && a != "" {
				if u, err := base.Parse(a); err == nil {
					action = u.String()
				}
			}
			cur = &Form{ID: attrs["id"], Method: method, Action: action, Origin: Origin(base), Fields: url.Values{}, Buttons: map[string]string{}}
			forms = append(forms, cur)
			if cur.ID != "" {
				byID[cur.ID] = cur
			}
			continue
		}
		if closing {
			continue
		}
		if fid := attrs["form"]; fid != "" {
			orphans = append(orphans, orphan{fid, attrs, tag})
			continue
		}
		if cur != nil {
			add(cur, tag, attrs)
		}
	}
	for _, o := range orphans {
		if f := byID[o.formID]; f != nil {
			add(f, o.tag, o.attrs)
		}
	}
	return forms
}

// Origin is u's origin as a browser writes it in an Origin header
// (scheme://host[:port], default port left out).
func Origin(u *url.URL) string {
	if u == nil || u.Host == "" {
		return ""
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if p := u.Port(); scheme == "https" && p == "443" || scheme == "http" && p == "80" {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	return scheme + "://" + host
}

func hasAttr(a map[string]string, name string) bool {
	_, ok := a[name]
	return ok
}

// FindForm returns the form with that id, or nil.
func FindForm(forms []*Form, id string) *Form {
	for _, f := range forms {
		if f.ID == id {
			return f
		}
	}
	return nil
}
