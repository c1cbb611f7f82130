"""``{% load logpipe %}``: page counts in templates.

* ``{% views_today "/press/1/" %}``, ``{% views_today release %}`` (an object
  with ``get_absolute_url``), ``{% views_today %}`` (the current
  ``request.path``): today's page views; nothing when memcached cannot be read.
* ``{% visitors_today release %}``, ``{% visitors_today %}`` (with no argument
  the whole site): unique visitors today, when logpipe counts them.
* Both take ``as NAME`` to store the number (None when unknown) instead.
* ``{% top_pages 10 as pages %}``: today's most viewed paths, items with
  ``.path`` and ``.views`` (``[]`` when memcached cannot be read).
"""

from __future__ import annotations

from django import template

from logpipe.django.conf import counts

register = template.Library()


class _CountNode(template.Node):
    def __init__(self, read, target, var, default_target):
        self.read, self.target, self.var, self.default_target = read, target, var, default_target

    def render(self, context) -> str:
        if self.target is not None:
            target = self.target.resolve(context)
        else:
            target = self.default_target(context)
        value = self.read(target)
        if self.var:
            context[self.var] = value
            return ""
        return "" if value is None else str(value)


def _count_tag(name: str, read, default_target):
    def compile_tag(parser, token):
        bits = token.split_contents()[1:]
        var = None
        if len(bits) >= 2 and bits[-2] == "as":
            var, bits = bits[-1], bits[:-2]
        if len(bits) > 1:
            raise template.TemplateSyntaxError(f"{name} takes one path or object, optionally 'as NAME'")
        target = parser.compile_filter(bits[0]) if bits else None
        return _CountNode(read, target, var, default_target)

    register.tag(name, compile_tag)


def _request_path(context) -> str:
    request = context.get("request")
    if request is None:
        raise template.TemplateSyntaxError("views_today without an argument needs 'request' in the context")
    return request.path


_count_tag("views_today", lambda target: counts().views_today(target), _request_path)
_count_tag("visitors_today", lambda target: counts().visitors_today(target), lambda context: None)


@register.simple_tag
def top_pages(n: int = 10):
    """Today's *n* most viewed URL paths: a list of ``Page(path, views)``."""
    return counts().top_pages(int(n))
