from django.shortcuts import get_object_or_404, render

from press.models import PressRelease


def release(request, slug):
    return render(request, "press/release.html", {"release": get_object_or_404(PressRelease, slug=slug)})
