export default function Home() {
  return (
    <main>
      <h1>Conveyor shop</h1>
      <p>
        <code>POST /api/checkout</code> with <code>{'{"email": "a@example.com", "amount": 1200}'}</code>{" "}
        places an order; Conveyor delivers its receipt job to <code>/api/send-receipt</code>.
      </p>
    </main>
  );
}
