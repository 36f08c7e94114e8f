from . import conventions, output_size, stack, pointwise, quadratic, pooling, conv3d
TOPICS = {m.TOPIC.name: m.TOPIC for m in (stack, conventions, output_size, pointwise, quadratic, pooling, conv3d)}
def explain(topic, **options):
    return TOPICS[topic].explain(**options)
